"""experiments/tokenizer_ablation.py (lab material, not a shipped package): one row runs end to
end on the toy teacher, and partial results merge in table order."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parent.parent / "tokenizer_ablation.py"


def _ablation():
    """The script as a module (experiments/ is a folder of scripts, not a package)."""
    if "tokenizer_ablation" not in sys.modules:
        spec = importlib.util.spec_from_file_location("tokenizer_ablation", SCRIPT)
        module = importlib.util.module_from_spec(spec)
        sys.modules["tokenizer_ablation"] = module  # dataclasses look their module up
        spec.loader.exec_module(module)
    return sys.modules["tokenizer_ablation"]


def test_ablation_row_end_to_end_on_toy_world(tmp_path):
    """One ablation row through the real TokenizerTrainer, teacher encoder and all four losses."""
    from arm_tokenizer.losses.siglip import SigLIPLoss
    from arm_tokenizer.teachers.frozen import TeacherTextEncoder
    from arm_tokenizer.teachers.toy import build_toy_teacher, toy_batch

    ab = _ablation()
    SceneSet, _train, build_trainer, evaluate, markdown_table = (
        ab.SceneSet, ab._train, ab.build_trainer, ab.evaluate, ab.markdown_table)

    teacher = str(build_toy_teacher(tmp_path / "teacher", steps=2))

    def scenes(n: int, start: int) -> SceneSet:
        b = toy_batch(n, start=start)
        return SceneSet(((b["images"] + 1) * 127.5).round().to(torch.uint8), b["captions"], b["colors"], b["shapes"])

    data = {"train": scenes(32, 0), "probe_train": scenes(40, 100), "probe_test": scenes(24, 200),
            "retrieval_train": scenes(40, 300), "val": scenes(24, 400)}
    model = build_trainer(teacher, ("cap", "pix", "sig", "feat"), [4, 3, 3], lr=1e-3, steps=2, seed=0,
                          decoder_channels=16)
    assert [type(loss).__name__ for loss in model.losses] == ["CaptionLoss", "PixelReconstructionLoss",
                                                             "SigLIPLoss", "FeatureLoss"]
    assert [loss.weight for loss in model.losses] == [1.0, 5.0, 5.0, 1.0]
    frozen_before = {k: v.clone() for k, v in model.losses[2].text_encoder.state_dict().items()}
    seconds = _train(model, data["train"], steps=2, batch_size=8, seed=0, log_dir=tmp_path / "logs")
    assert seconds > 0
    for k, v in model.losses[2].text_encoder.state_dict().items():
        assert torch.equal(v, frozen_before[k]), k  # the frozen teacher never moves
    sig = next(loss for loss in model.losses if isinstance(loss, SigLIPLoss))
    row = evaluate(model.tokenizer, TeacherTextEncoder(teacher), data, sig)
    assert 0.0 <= row["probe_color"] <= 1.0 and 0.0 <= row["probe_shape"] <= 1.0
    assert row["retrieval_r1_sig_head"] is not None and 0 < row["codebook_usage"] <= 1.0
    assert row["psnr"] > 0
    row["train_seconds"] = seconds
    table = markdown_table({"rows": {"all": row}, "teacher": None})
    assert "| all |" in table and "80.2%" in table  # the paper's row sits beside ours


def test_ablation_results_merge_in_table_order(tmp_path):
    import json

    merge_results = _ablation().merge_results

    row = {"probe_color": 0.9, "probe_shape": 0.5, "retrieval_r1_sig_head": None, "retrieval_r1_ridge": 0.1,
           "psnr": 20.0, "codebook_usage": 0.3, "train_seconds": 10.0}
    setup = {"steps": 5, "batch_size": 2, "lr": 1e-3, "fsq_levels": [8, 5, 5, 5], "seed": 0, "teacher": "t"}
    (tmp_path / "a.json").write_text(json.dumps({"setup": setup, "rows": {"all": row}, "teacher": None}))
    (tmp_path / "b.json").write_text(json.dumps({"setup": setup, "rows": {"pix": row}, "teacher": None}))
    merged = merge_results([str(tmp_path / "a"), str(tmp_path / "b")], str(tmp_path / "m"))
    assert list(merged["rows"]) == ["pix", "all"]
    assert (tmp_path / "m.md").read_text().index("| pix |") < (tmp_path / "m.md").read_text().index("| all |")
    (tmp_path / "c.json").write_text(json.dumps({"setup": dict(setup, steps=6), "rows": {}, "teacher": None}))
    with pytest.raises(ValueError, match="steps"):
        merge_results([str(tmp_path / "a"), str(tmp_path / "c")], str(tmp_path / "m2"))
