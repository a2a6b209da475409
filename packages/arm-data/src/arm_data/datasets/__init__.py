"""Real-data readers: folder with sidecars, JSONL manifest and WebDataset shards (see the README).

Record sources (images stay lazy): :class:`FolderRecords`, :class:`JsonlRecords`,
:class:`WdsRecords`. Torch datasets: :class:`PairDataset`, :class:`VQADataset`,
:class:`EditDataset` (map-style, folder or JSONL) and :class:`WdsDataset` (streamed).
"""

from arm_data.datasets.folder import FolderRecords
from arm_data.datasets.jsonl import JsonlRecords
from arm_data.datasets.tasks import (
    EditDataset,
    PairDataset,
    RecordDataset,
    VQADataset,
    WdsDataset,
    collate_samples,
    encode_record,
    open_records,
)
from arm_data.datasets.wds import WdsRecords

__all__ = [
    "FolderRecords",
    "JsonlRecords",
    "WdsRecords",
    "RecordDataset",
    "PairDataset",
    "VQADataset",
    "EditDataset",
    "WdsDataset",
    "collate_samples",
    "encode_record",
    "open_records",
]
