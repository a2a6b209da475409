"""The Python example of the README's real-data section runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from arm_data.datasets.writers import write_folder
from arm_data.records import EditRecord, PairRecord
from PIL import Image

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs(tmp_path, monkeypatch):
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    example = next(b for b in blocks if "EditDataset(" in b)
    monkeypatch.chdir(tmp_path)
    write_folder([EditRecord(Image.new("RGB", (50, 40), "red"), Image.new("RGB", (50, 40), "blue"), "blue it",
                             key="e1")], "data/edits")
    write_folder([PairRecord(Image.new("RGB", (30, 20), "green"), "green", key=k) for k in ("a", "b")], "data/pairs")
    scope: dict = {}
    exec(compile(example, str(README), "exec"), scope)
    assert scope["item"]["source"].shape == (3, 256, 384)
    assert sorted(x["key"] for x in scope["stream"]) == ["a", "b"]


def test_readme_yaml_example_matches_the_signature():
    from arm_data.datamodules.image_text import ImageTextDataModule

    text = README.read_text(encoding="utf-8")
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "image_text" in b)
    init_args = yaml.safe_load(block)["data"]["init_args"]
    dm = ImageTextDataModule(**init_args)  # constructing reads nothing from disk
    assert dm.image_shape == (3, 256, 256) and dm.error_kw["max_skip_fraction"] == 0.01
