"""scripts/demo.py's profiles and --set overrides, checked on the configs they derive (no training)."""

from __future__ import annotations

import copy
import importlib.util
import sys

import pytest
import yaml
from conftest import ROOT


@pytest.fixture(scope="module")
def demo():
    spec = importlib.util.spec_from_file_location("arm_demo_script", ROOT / "scripts" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["arm_demo_script"] = module   # dataclasses look the module up by name
    spec.loader.exec_module(module)
    return module


def _ctx(demo, tmp_path, profile: str, sets: list[str] = ()):
    return demo.Ctx(out=tmp_path, profile=copy.deepcopy(demo.PROFILES[profile]), name=profile, threads=1,
                    sets=demo.parse_sets(list(sets), demo.TRAINING_STAGES))


def test_set_values_are_yaml_and_win_over_the_profile(demo, tmp_path) -> None:
    ctx = _ctx(demo, tmp_path, "gpu", ["lm:trainer.max_steps=100", "lm:model.init_args.compile=false",
                                       "teacher:trainer.max_time=00:00:01:10",
                                       "lm:model.init_args.task_loss_weights={t2i: 2, und: 1}"])
    lm = ctx.stage_overrides("lm")
    assert lm["trainer.max_steps"] == 100
    assert lm["model.init_args.compile"] is False                   # the profile said True
    assert lm["model.init_args.task_loss_weights"] == {"t2i": 2, "und": 1}
    assert lm["trainer.precision"] == "bf16-mixed"                  # the profile's, untouched
    assert ctx.stage_overrides("teacher")["trainer.max_time"] == "00:00:01:10"
    assert "trainer.max_steps" not in ctx.stage_overrides("tokenizer")


@pytest.mark.parametrize("item, message", [
    ("lm.trainer.max_steps=1", "STAGE:KEY=VALUE"),
    ("lm:trainer.max_steps", "STAGE:KEY=VALUE"),
    ("tokens:count=5", "unknown training stage 'tokens'"),
    ("lm:trainer.max_steps=[1", "not YAML"),
])
def test_bad_set_says_what_is_wrong(demo, item, message) -> None:
    with pytest.raises(SystemExit, match=message):
        demo.parse_sets([item], demo.TRAINING_STAGES)


def test_gpu_profile_puts_training_on_the_gpu_and_cpu_profiles_do_not(demo, tmp_path) -> None:
    gpu = _ctx(demo, tmp_path / "gpu", "gpu")
    path = demo.derived_config(gpu, "configs/lm/shapes-quickstart.yaml", "lm", gpu.stage_overrides("lm"), 100)
    cfg = yaml.safe_load(path.read_text())
    assert cfg["trainer"]["accelerator"] == "gpu" and cfg["trainer"]["precision"] == "bf16-mixed"
    assert cfg["model"]["init_args"]["code_init_share"] == 0.5
    assert cfg["data"]["init_args"]["num_workers"] == min(4, gpu.workers())
    teacher = gpu.stage_overrides("teacher")
    assert teacher["model.init_args.pixel_weight"] == 5.0
    assert teacher["data.init_args.num_workers"] == gpu.workers()
    small = _ctx(demo, tmp_path / "small", "small")
    assert small.workers() == 0
    assert small.stage_overrides("lm") == {}


def test_config_swaps_a_stage_and_its_export_still_feeds_the_next(demo, tmp_path) -> None:
    ctx = _ctx(demo, tmp_path, "small")
    ctx.configs = demo.parse_configs(["tokenizer=configs/tokenizer/shapes-local.yaml"])
    assert ctx.config("tokenizer") == "configs/tokenizer/shapes-local.yaml"
    assert ctx.config("lm") == "configs/lm/demo.yaml"              # the small profile's own
    path = demo.derived_config(ctx, ctx.config("tokenizer"), "tokenizer", {}, 100)
    init = yaml.safe_load(path.read_text())["model"]["init_args"]
    assert init["proj_in"]["class_path"] == "mlp"                          # the swapped config's model
    assert init["export_dir"] == str(tmp_path / "tokenizer")               # not runs/tokenizer-local
    assert init["encoder"]["init_args"]["checkpoint_path"].startswith(str(tmp_path / "teacher"))
    teacher = demo.derived_config(ctx, ctx.config("teacher"), "teacher", {}, 100)
    assert yaml.safe_load(teacher.read_text())["model"]["init_args"]["output_dir"] == str(tmp_path / "teacher")


@pytest.mark.parametrize("item, message", [
    ("tokenizer:configs/tokenizer/shapes-local.yaml", "STAGE=PATH"),
    ("tokens=configs/tokenizer/shapes-local.yaml", "unknown training stage 'tokens'"),
    ("tokenizer=configs/tokenizer/nope.yaml", "no such file"),
])
def test_bad_config_says_what_is_wrong(demo, item, message) -> None:
    with pytest.raises(SystemExit, match=message):
        demo.parse_configs([item])


def test_rerun_with_another_config_is_refused_not_mixed(demo, tmp_path) -> None:
    # a complete teacher stage, trained from the shipped config
    for name in ("teacher/image_tower.safetensors", "teacher/teacher.json"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    (tmp_path / "stages").mkdir()
    (tmp_path / "stages" / "teacher.json").write_text(
        '{"summary": "done", "config": "configs/tokenizer/demo-teacher.yaml"}')
    small = ["--out", str(tmp_path), "--only", "teacher", "--profile", "small"]
    assert demo.main(small) == 0   # same config: skipped
    with pytest.raises(SystemExit, match="trained from configs/tokenizer/demo-teacher.yaml, not "
                                         "configs/tokenizer/shapes-local.yaml"):
        demo.main([*small, "--config", "teacher=configs/tokenizer/shapes-local.yaml"])


def test_an_interrupted_stage_does_not_resume_under_another_config(demo, tmp_path) -> None:
    ctx = _ctx(demo, tmp_path, "small")
    (tmp_path / "tokenizer-ckpt").mkdir()
    (tmp_path / "tokenizer-ckpt" / "last.ckpt").write_bytes(b"")
    (tmp_path / "tokenizer-ckpt" / "source").write_text("configs/tokenizer/shapes-quickstart.yaml")
    ctx.configs = {"tokenizer": "configs/tokenizer/shapes-local.yaml"}
    with pytest.raises(SystemExit, match="was trained from configs/tokenizer/shapes-quickstart.yaml, "
                                         "not configs/tokenizer/shapes-local.yaml"):
        demo.stage_tokenizer(ctx)


def test_gpu_profile_evaluates_editing_at_two_image_scales(demo, tmp_path) -> None:
    """The gpu profile's evaluation runs editing at ARM's image scale and at 3 (gpu_local.md);
    the CPU profiles keep arm-lm evaluate's default (ARM's 1.25 alone)."""
    def image_scales(profile: str) -> list[str] | None:
        cmd = demo.evaluate_command(_ctx(demo, tmp_path / profile, profile), tmp_path / "lm", tmp_path / "m.json")
        if "--image-guidance-scale" not in cmd:
            return None
        i = cmd.index("--image-guidance-scale") + 1
        return cmd[i:i + len(demo.PROFILES[profile]["eval_edit_image_scale"])]

    assert image_scales("gpu") == ["1.25", "3.0"]
    assert image_scales("small") is None and image_scales("fast") is None


def test_small_profile_runs_the_demo_world_and_auto_picks_by_cuda(demo, tmp_path, monkeypatch) -> None:
    ctx = _ctx(demo, tmp_path, "small", ["lm:trainer.max_steps=5"])
    assert ctx.difficulty == "demo"
    assert ctx.stage_overrides("tokenizer")["data.init_args.difficulty"] == "demo"
    assert ctx.stage_overrides("rl")["data.init_args.difficulty"] == "demo"
    assert "data.init_args.difficulty" not in ctx.stage_overrides("lm")       # the shards carry it
    cmd = demo.evaluate_command(ctx, tmp_path / "lm", tmp_path / "m.json")
    assert cmd[cmd.index("--difficulty") + 1] == "demo"
    assert cmd[cmd.index("--n") + 1] == "200"                                  # the bars' sample size
    full = _ctx(demo, tmp_path / "full", "full")
    assert full.difficulty == "full" and "data.init_args.difficulty" not in full.stage_overrides("tokenizer")
    assert full.config("lm") == "configs/lm/shapes-quickstart.yaml"
    seeded = demo.Ctx(out=tmp_path, profile=copy.deepcopy(demo.PROFILES["small"]), name="small", threads=1, seed=3)
    assert seeded.stage_overrides("lm")["seed_everything"] == 3
    monkeypatch.setattr(demo, "cuda_available", lambda: True)
    assert demo.resolve_profile("auto")[0] == "gpu"
    monkeypatch.setattr(demo, "cuda_available", lambda: False)
    assert demo.resolve_profile("auto")[0] == "small"
    assert demo.resolve_profile("full") == ("full", "asked for")
