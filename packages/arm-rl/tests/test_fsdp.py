"""FSDP and the GRPO trainer: FSDP2 (``--trainer.strategy=fsdp2``, :mod:`arm_rl.fsdp`) trains;
Lightning's FSDP1 strategies are refused in one line (exit 2) that names ``fsdp2``.

- ``--trainer.strategy=fsdp`` (and any ``FSDPStrategy`` subclass, such as
  ``arm_core.lightning_module.BlockFSDPStrategy``) is refused before any rank is launched,
  on a CPU too (where the framework's device check would otherwise say FSDP needs CUDA):
  GRPO's manual backward inside ``training_step`` fails FSDP1's state check on any device.
  A tensor-parallel ``ModelParallelStrategy`` is refused too (FSDP2 over the data-parallel
  mesh is all ``configure_model`` applies).
- A real 2-process FSDP2 fit on a CPU (gloo): the policy is sharded, the ranks roll out
  distinct prompts, one step equals one process's step on the union of the ranks' rollouts,
  the export holds the full trained weights, and resuming from the distributed checkpoint
  draws the same rollouts and ends with the same weights on every rank.
- ``arm-rl fit --config configs/rl/demo-grpo.yaml --trainer.devices=2 --trainer.strategy=fsdp2``
  trains and exports.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import lightning.pytorch as pl
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from arm_rl.cli import main
from arm_rl.fsdp import FSDP2Strategy
from arm_rl.lightning_module import GRPOTrainer
from arm_rl.prompts import ShapesPromptDataModule
from arm_rl.sharding import rank_batch
from lightning.pytorch.strategies import (
    DDPStrategy,
    FSDPStrategy,
    ModelParallelStrategy,
    SingleDeviceStrategy,
)

# the DDP test's tiny setup: its reward, model and data, and its union-step replay
from test_ddp import (
    DATA,
    MODEL,
    STEPS,
    WORLD,
    Recording,
    Replay,
    _free_port,
    _max_diff,
    _tasks,
    _union,
    assert_resumed_like,
    run_demo_config_on_two_devices,
)

REPO = Path(__file__).resolve().parents[3]
DEMO = REPO / "configs" / "rl" / "demo-grpo.yaml"


# ---------------------------------------------------------------------- refusals
@pytest.mark.parametrize("strategy", ["fsdp", '{"class_path": "arm_core.lightning_module.BlockFSDPStrategy"}'])
def test_fsdp1_on_cpu_is_one_line_naming_fsdp2_and_ddp(strategy, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("ARM_DEBUG", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--config", str(DEMO), f"--trainer.strategy={strategy}", "--trainer.devices=2",
              "--trainer.accelerator=cpu", "--trainer.logger=false"])
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("arm-rl: error:")]
    assert len(lines) == 1, err
    assert "(FSDP1)" in lines[0] and "--trainer.strategy=fsdp2" in lines[0], lines[0]
    assert "--trainer.strategy=ddp" in lines[0], lines[0]
    assert "needs CUDA" not in lines[0]                     # the model's advice, not the device check's
    assert "could not build" not in lines[0]                # not wrapped as a constructor error


def test_fsdp_device_check_passes_cuda_and_other_strategies():
    from arm_core.lightning_module import BlockFSDPStrategy
    from arm_tokenizer.framework.config_check import ConfigError
    from arm_tokenizer.framework.lightning_cli import check_fsdp_device

    for strategy in ("fsdp", "fsdp_cpu_offload", FSDPStrategy(), BlockFSDPStrategy()):
        check_fsdp_device(strategy, "gpu")
        check_fsdp_device(strategy, "cuda")
        with pytest.raises(ConfigError, match="needs CUDA GPUs"):
            check_fsdp_device(strategy, "cpu")
    for strategy in ("ddp", "auto", "fsdp2", DDPStrategy(), FSDP2Strategy(), None):
        check_fsdp_device(strategy, "cpu")


def _on(strategy, devices: int):
    """``strategy`` as a Trainer on ``devices`` CPU devices would hold it."""
    strategy.parallel_devices = [torch.device("cpu")] * devices
    return SimpleNamespace(strategy=strategy)


def test_grpo_refuses_fsdp1_and_tensor_parallel_and_takes_fsdp2():
    from arm_core.lightning_module import BlockFSDPStrategy

    for strategy, what in ((FSDPStrategy(), "FSDPStrategy (FSDP1)"),
                           (BlockFSDPStrategy(), "BlockFSDPStrategy (FSDP1)"),
                           ("fsdp", "fsdp (FSDP1)"), ("fsdp_cpu_offload", "fsdp_cpu_offload (FSDP1)")):
        with pytest.raises(ValueError, match=r"--trainer\.strategy=fsdp2") as exc:
            GRPOTrainer.check_strategy(strategy)
        assert f"cannot train under {what}" in str(exc.value)
        assert "\n" not in str(exc.value)
        if not isinstance(strategy, str):
            with pytest.raises(ValueError, match="FSDP1"):
                GRPOTrainer.check_trainer(SimpleNamespace(strategy=strategy))
    # Lightning's defaults on 2 devices of a node: data_parallel 1 x tensor_parallel 2
    for strategy in (ModelParallelStrategy(), ModelParallelStrategy(data_parallel_size=1, tensor_parallel_size=2),
                     FSDP2Strategy(tensor_parallel_size=2)):
        with pytest.raises(ValueError, match=r"tensor_parallel_size=2: .*--trainer\.strategy=fsdp2"):
            GRPOTrainer.check_trainer(_on(strategy, 2))
    for strategy, devices in ((FSDP2Strategy(), 2), (FSDP2Strategy(), 1), (ModelParallelStrategy(), 1),
                              (ModelParallelStrategy(data_parallel_size=2, tensor_parallel_size=1), 2)):
        GRPOTrainer.check_trainer(_on(strategy, devices))
    for strategy in ("ddp", "fsdp2", "auto", DDPStrategy(), FSDP2Strategy()):
        GRPOTrainer.check_strategy(strategy)
    GRPOTrainer.check_trainer(SimpleNamespace(strategy=DDPStrategy()))
    GRPOTrainer.check_trainer(SimpleNamespace(strategy=SingleDeviceStrategy("cpu")))


def test_fsdp2_is_a_lightning_strategy_name():
    from arm_rl.fsdp import register_fsdp2
    from lightning.pytorch.strategies import StrategyRegistry

    register_fsdp2()
    register_fsdp2()                                           # idempotent
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="fsdp2", logger=False)
    assert type(trainer.strategy) is FSDP2Strategy and "fsdp2" in StrategyRegistry


def test_trainer_built_in_python_is_refused_at_setup(tmp_path):
    """A Trainer built in Python with an FSDP1 strategy (one Lightning lets through on a CPU)
    is refused at GRPO's setup, before any model is loaded (the checkpoint does not exist)."""
    from arm_core.lightning_module import BlockFSDPStrategy

    env = dict(os.environ)    # Lightning leaves MASTER_PORT, LOCAL_RANK, ... set in this process
    module = GRPOTrainer(policy_checkpoint=str(tmp_path / "missing"), group_size=2, export_dir="")
    trainer = pl.Trainer(accelerator="cpu", devices=1, strategy=BlockFSDPStrategy(), max_steps=1,
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path)
    try:
        with pytest.raises(ValueError, match=r"cannot train under BlockFSDPStrategy \(FSDP1\)"):
            trainer.fit(module, datamodule=ShapesPromptDataModule(prompts_per_step=1, num_prompts=2))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
        # a later `arm-rl fit --trainer.devices=2` would take LOCAL_RANK for an external launch
        os.environ.clear()
        os.environ.update(env)


# ---------------------------------------------------------------------- the 2-process FSDP2 fit
class GradNorms:
    """Keeps the gradient norm of every optimizer step (before clipping). Adam's step hardly
    depends on the gradients' scale, so the weights alone would not show a gradient averaged
    twice; the norm does."""

    def _clip_grad_norm(self):
        norm = super()._clip_grad_norm()
        self.__dict__.setdefault("grad_norms", []).append(float(norm))
        return norm


class ShardRecording(GradNorms, Recording):
    """:class:`test_ddp.Recording` for a sharded policy: the full weights after each step
    (gathered on every rank), and the share of the policy's elements this rank holds."""

    def on_train_batch_end(self, outputs, batch, batch_idx):
        from torch.distributed.tensor import DTensor

        state = self.policy.state_dict()
        self.__dict__.setdefault("weights", []).append(
            {k: (v.full_tensor() if isinstance(v, DTensor) else v).detach().clone() for k, v in state.items()})
        local = sum(v.to_local().numel() if isinstance(v, DTensor) else v.numel() for v in state.values())
        self.__dict__["held"] = local / sum(v.numel() for v in state.values())


def _worker(rank: int, port: int, lm: str, out: str, steps: int, ckpt: str | None, export: str) -> None:
    from lightning.pytorch.callbacks import ModelCheckpoint

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(WORLD),
                      RANK=str(rank), LOCAL_RANK=str(rank), NODE_RANK="0")
    torch.set_num_threads(1)
    module = ShardRecording(policy_checkpoint=lm, tasks=_tasks(), **{**MODEL, "export_dir": export})
    cb = ModelCheckpoint(dirpath=out, filename="{step}", every_n_train_steps=1, save_top_k=-1)
    trainer = pl.Trainer(accelerator="cpu", devices=WORLD, strategy=FSDP2Strategy(), max_steps=steps,
                         logger=False, callbacks=[cb], enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=out)
    trainer.fit(module, datamodule=ShapesPromptDataModule(**DATA), ckpt_path=ckpt)
    torch.save({"rollouts": module.__dict__["recorded"], "weights": module.__dict__["weights"],
                "grad_norms": module.__dict__["grad_norms"], "held": module.__dict__["held"], "reference_sharded": any(
                    type(p).__name__ == "DTensor" for p in module.reference.parameters())},
               Path(out) / f"rank{rank}.pt")


def _fsdp_fit(lm: Path, out: Path, steps: int, ckpt: Path | None = None, export: str = "") -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    mp.spawn(_worker, args=(_free_port(), str(lm), str(out), steps, None if ckpt is None else str(ckpt), export),
             nprocs=WORLD, join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


class NormReplay(GradNorms, Replay):
    pass


def _single_step(lm: Path, rollouts: list, tmp: Path) -> tuple[dict[str, torch.Tensor], float]:
    """One process's step on ``rollouts``: the weights after it and its gradient norm."""
    module = NormReplay(policy_checkpoint=str(lm), tasks=_tasks(), **MODEL)
    module.__dict__["replay"] = rollouts
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp)
    trainer.fit(module, datamodule=ShapesPromptDataModule(**DATA))
    return module.policy.state_dict(), module.__dict__["grad_norms"][0]


@pytest.fixture(scope="module")
def fsdp_dir(tiny_lm, tmp_path_factory):
    """An uninterrupted 2-process FSDP2 fit of STEPS steps: distributed checkpoints
    step=1.ckpt/, ..., rank*.pt, and the export policy/."""
    out = tmp_path_factory.mktemp("fsdp")
    _fsdp_fit(tiny_lm / "lm", out, STEPS, export=str(out / "policy"))
    return out


@pytest.fixture
def fsdp_run(fsdp_dir):
    return [torch.load(fsdp_dir / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def test_fsdp2_shards_the_policy_and_a_step_is_the_union_step(tiny_lm, fsdp_dir, fsdp_run, tmp_path):
    from arm_core.checkpoint import load_lm

    # each rank holds about half the policy; the reference is a whole replica
    for run in fsdp_run:
        assert 0.3 < run["held"] < 0.7, run["held"]
        assert not run["reference_sharded"]
    prompts = [[sorted(r.index for b in step for r in b.records[:: MODEL["group_size"]])
                for step in run["rollouts"]] for run in fsdp_run]
    dm = ShapesPromptDataModule(**DATA)
    dm.setup()
    order = dm.epoch_order(0)
    for r in range(WORLD):
        assert prompts[r] == [sorted(rank_batch(order, k, 2, r, WORLD)) for k in range(STEPS)]
    assert not set(prompts[0][0]) & set(prompts[1][0]), prompts
    # different task mixes on the two ranks: different decode steps and padded backwards
    tasks = [sorted(b.task for b in run["rollouts"][0]) for run in fsdp_run]
    assert len(tasks[0]) != len(tasks[1]), tasks
    for k in range(STEPS):
        assert _max_diff(fsdp_run[0]["weights"][k], fsdp_run[1]["weights"][k]) == 0.0

    start = load_lm(tiny_lm / "lm").model.state_dict()
    step = fsdp_run[0]["weights"][0]
    union, union_norm = _single_step(tiny_lm / "lm", _union([run["rollouts"][0] for run in fsdp_run]), tmp_path / "u")
    alone, _ = _single_step(tiny_lm / "lm", fsdp_run[0]["rollouts"][0], tmp_path / "a")
    moved, off_union, off_alone = _max_diff(step, start), _max_diff(step, union), _max_diff(step, alone)
    print(f"FSDP2 step: moved {moved:.3g}; vs the union step {off_union:.3g}; vs rank 0 alone {off_alone:.3g}")
    tol = 1e-3 * MODEL["lr"]                    # as test_ddp's: AdamW's first step amplifies rounding
    assert moved > 0.2 * MODEL["lr"]
    assert off_union < tol, off_union
    assert off_alone > 100 * tol, off_alone
    # the gradient itself: FSDP2's reduce-scatter averages once (nothing else reduces it)
    norms = [run["grad_norms"][0] for run in fsdp_run]
    assert norms[0] == norms[1] and abs(norms[0] / union_norm - 1) < 1e-4, (norms, union_norm)

    # the export: the full trained policy, once, in arm-core's format
    exported = load_lm(fsdp_dir / "policy")
    assert exported.metadata["global_step"] == STEPS
    assert _max_diff(exported.model.state_dict(), fsdp_run[0]["weights"][-1]) == 0.0
    assert (fsdp_dir / f"step={STEPS - 1}.ckpt").is_dir()   # a distributed checkpoint


def test_fsdp2_resume_is_exact_per_rank(tiny_lm, fsdp_dir, fsdp_run, tmp_path):
    resumed = _fsdp_fit(tiny_lm / "lm", tmp_path, STEPS, ckpt=fsdp_dir / f"step={STEPS - 1}.ckpt")
    assert_resumed_like(resumed, fsdp_run)


# ---------------------------------------------------------------------- the shipped config
def test_demo_config_runs_fsdp2_on_two_devices_with_no_extra_flags(tiny_lm, tmp_path):
    from arm_core.checkpoint import load_lm

    run_demo_config_on_two_devices(tiny_lm, tmp_path, "fsdp2")
    exported = load_lm(tmp_path / "runs" / "rl")
    assert exported.metadata["global_step"] == 1
    assert load_lm(tiny_lm / "lm").model.state_dict().keys() == exported.model.state_dict().keys()
