"""GRPO on N devices with Lightning's own DDP: two CPU processes (gloo).

- the prompt split (arm_rl.sharding): distinct prompts per rank, their union is one
  process's batch of ``prompts_per_step * world``, a short last batch fills every rank;
- a real 2-process fit: the ranks roll out distinct prompts, end every step with identical
  weights, and one DDP step equals one process's step on the union of the two ranks'
  rollouts (and clearly differs from a step on one rank's rollouts alone);
- resuming that fit from a mid-epoch checkpoint draws, on each rank, the rollouts the
  uninterrupted run drew and ends with the same weights;
- ``arm-rl fit --config configs/rl/demo-grpo.yaml --trainer.devices=2 --trainer.strategy=ddp``
  (no other distributed flag) trains and exports.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import torch.multiprocessing as mp
from arm_core.checkpoint import load_lm
from arm_rl.lightning_module import GRPOTrainer
from arm_rl.prompts import ShapesPromptDataModule
from arm_rl.rewards.base import Reward
from arm_rl.rl_task import RLTask
from arm_rl.sharding import rank_batch, steps_per_epoch

REPO = Path(__file__).resolve().parents[3]
WORLD = 2
MODEL = dict(group_size=2, beta=0.04, lr=5e-2, export_dir="", seed=7)
# 6 prompts, 2 per rank per step: steps of 4 and 2 prompts (the short last one: 1 per rank)
DATA = dict(task_weights={"t2i": 0.5, "edit": 0.5}, prompts_per_step=2, num_prompts=6, seed=0)
STEPS = 2


# ---------------------------------------------------------------------- the prompt split
def test_ranks_split_each_step_and_their_union_is_one_process_batch():
    order = list(range(10))
    for step in range(steps_per_epoch(10, 2, 2)):
        parts = [rank_batch(order, step, 2, r, 2) for r in range(2)]
        assert not set(parts[0]) & set(parts[1]) or step == 2
        union = parts[0] + parts[1]
        assert len(parts[0]) == len(parts[1])
        if step < 2:
            assert union == rank_batch(order, step, 4)            # one process, 4 per step
    # the short last step (2 prompts over 2 ranks) gives each rank one
    assert [rank_batch(order, 2, 2, r, 2) for r in range(2)] == [[8], [9]]
    # 3 left over 2 ranks: padded from the epoch's start so both ranks take 2
    assert [rank_batch(list(range(7)), 1, 2, r, 2) for r in range(2)] == [[4, 5], [6, 0]]
    # a 1-prompt epoch still fills every rank
    assert [rank_batch([5], 0, 4, r, 3) for r in range(3)] == [[5], [5], [5]]
    assert rank_batch(order, 0, 3) == [0, 1, 2] and rank_batch(order, 3, 3) == [9]   # 1 process: as before
    with pytest.raises(IndexError, match="past the end"):
        rank_batch(order, 5, 2, 0, 2)
    with pytest.raises(ValueError, match="rank 2"):
        rank_batch(order, 0, 2, 2, 2)


def test_step_plan_pads_backwards_and_weights_by_rows_over_all_ranks():
    from arm_rl.distributed import StepPlan

    # rank 0: one step, a t2i chunk of 4 and an edit chunk of 2; rank 1: one chunk of 2;
    # rank 2: nothing kept (dynamic sampling dropped every group)
    plan = StepPlan.agree([[[4, 2]], [[2]], []])
    assert (plan.backwards, plan.rows, len(plan), plan.empty) == ([2], [8], 1, False)
    # DDP averages 3 ranks' gradients: 3 * n / 8 makes it the rollout-weighted mean over all 8
    assert [plan.weight(0, n) for n in (4, 2, 2)] == [1.5, 0.75, 0.75]
    # minibatches: ranks with fewer steps pad whole steps
    assert StepPlan.agree([[[2], [2]], [[2]]]).backwards == [1, 1]
    assert StepPlan.agree([[], []]).empty and StepPlan.agree([[[3]]]).weight(0, 3) == 1.0


def test_ranks_drawing_the_same_prompts_is_warned():
    m = GRPOTrainer(group_size=2)
    with pytest.warns(UserWarning, match="all 2 ranks drew the same prompts"):
        m._check_ranks_drew_distinct_prompts([["t2i prompt #1"], ["t2i prompt #1"]])
    m._check_ranks_drew_distinct_prompts([["t2i prompt #1"], ["t2i prompt #2"]])     # silent


# ---------------------------------------------------------------------- the 2-process fit
class CodeReward(Reward):
    """Fraction of the image's codes equal to 3 (learnable; varies within a group)."""

    def compute(self, images, records, codes=None):
        return (codes == 3).float().mean(1)


def _tasks():
    return {t: RLTask(temperature=1.0, top_k=None, reward=CodeReward()) for t in ("t2i", "edit")}


class Recording(GRPOTrainer):
    """Keeps each rollout batch (images dropped) and the weights after each step."""

    def make_rollouts(self, records, batch_idx=0):
        out = super().make_rollouts(records, batch_idx)
        kept = []
        for b in out:
            c = b.select(torch.arange(len(b)))
            c.images = None
            kept.append(c)
        self.__dict__.setdefault("recorded", []).append(kept)
        return out

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self.__dict__.setdefault("weights", []).append(
            {k: v.detach().clone() for k, v in self.policy.state_dict().items()})


class Replay(GRPOTrainer):
    """Trains on given rollouts instead of sampling."""

    def make_rollouts(self, records, batch_idx=0):
        return self.__dict__["replay"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, lm: str, out: str, steps: int, ckpt: str | None) -> None:
    from lightning.pytorch.callbacks import ModelCheckpoint

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(WORLD),
                      RANK=str(rank), LOCAL_RANK=str(rank), NODE_RANK="0")
    torch.set_num_threads(1)
    module = Recording(policy_checkpoint=lm, tasks=_tasks(), **MODEL)
    cb = ModelCheckpoint(dirpath=out, filename="{step}", every_n_train_steps=1, save_top_k=-1)
    trainer = pl.Trainer(accelerator="cpu", devices=WORLD, strategy="ddp", max_steps=steps, logger=False,
                         callbacks=[cb], enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=out)
    trainer.fit(module, datamodule=ShapesPromptDataModule(**DATA), ckpt_path=ckpt)
    torch.save({"rollouts": module.__dict__["recorded"], "weights": module.__dict__["weights"]},
               Path(out) / f"rank{rank}.pt")


def _ddp_fit(lm: Path, out: Path, steps: int, ckpt: Path | None = None) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    mp.spawn(_worker, args=(_free_port(), str(lm), str(out), steps, None if ckpt is None else str(ckpt)),
             nprocs=WORLD, join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def _single_step(lm: Path, rollouts: list, tmp: Path) -> dict[str, torch.Tensor]:
    module = Replay(policy_checkpoint=str(lm), tasks=_tasks(), **MODEL)
    module.__dict__["replay"] = rollouts
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp)
    trainer.fit(module, datamodule=ShapesPromptDataModule(**DATA))
    return module.policy.state_dict()


def _union(per_rank: list[list]) -> list:
    from arm_rl.rollout import concat_rollouts

    by_task: dict[str, list] = {}
    for rollouts in per_rank:
        for b in rollouts:
            by_task.setdefault(b.task, []).append(b)
    return [concat_rollouts(bs) for bs in by_task.values()]


def _max_diff(a: dict, b: dict) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.fixture(scope="module")
def ddp_dir(tiny_lm, tmp_path_factory):
    """An uninterrupted 2-process fit of STEPS steps: checkpoints step=1.ckpt, ..., rank*.pt."""
    out = tmp_path_factory.mktemp("ddp")
    _ddp_fit(tiny_lm / "lm", out, STEPS)
    return out


@pytest.fixture
def ddp_run(ddp_dir):
    return [torch.load(ddp_dir / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def test_ddp_ranks_draw_distinct_prompts_and_a_step_is_the_union_step(tiny_lm, ddp_run, tmp_path):
    prompts = [[sorted(r.index for b in step for r in b.records[:: MODEL["group_size"]])
                for step in run["rollouts"]] for run in ddp_run]
    for step in range(STEPS):
        assert not set(prompts[0][step]) & set(prompts[1][step]), (step, prompts)
    # the first step's ranks hold different task mixes, so one of them pads its backward
    # calls (arm_rl.distributed) and the union comparison below covers that path
    tasks = [sorted(b.task for b in run["rollouts"][0]) for run in ddp_run]
    assert len(tasks[0]) != len(tasks[1]), tasks
    # the rank-aware split of the data module's own order
    dm = ShapesPromptDataModule(**DATA)
    dm.setup()
    order = dm.epoch_order(0)
    for r in range(WORLD):
        assert prompts[r] == [sorted(rank_batch(order, k, 2, r, WORLD)) for k in range(STEPS)]
    # DDP keeps the replicas identical
    for k in range(STEPS):
        assert _max_diff(ddp_run[0]["weights"][k], ddp_run[1]["weights"][k]) == 0.0

    start = load_lm(tiny_lm / "lm").model.state_dict()
    ddp_step = ddp_run[0]["weights"][0]
    union = _single_step(tiny_lm / "lm", _union([run["rollouts"][0] for run in ddp_run]), tmp_path / "u")
    alone = _single_step(tiny_lm / "lm", ddp_run[0]["rollouts"][0], tmp_path / "a")
    moved, off_union, off_alone = _max_diff(ddp_step, start), _max_diff(ddp_step, union), _max_diff(ddp_step, alone)
    print(f"DDP step: moved {moved:.3g}; vs the union step {off_union:.3g}; vs rank 0 alone {off_alone:.3g}")
    # AdamW's first step is lr * g / (|g| + 1e-8): on entries with a gradient near 1e-8 the
    # float rounding of summing the same gradients in another order is amplified, so the
    # tolerance is relative to lr (measured: 4e-6 to 2e-5 at lr 5e-2).
    tol = 1e-3 * MODEL["lr"]
    assert moved > 0.2 * MODEL["lr"]            # the step did something
    assert off_union < tol, off_union           # the union step, to float precision
    assert off_alone > 100 * tol, off_alone     # ... and far from what one rank alone would do


def test_ddp_resume_is_exact_per_rank(tiny_lm, ddp_dir, ddp_run, tmp_path):
    resumed = _ddp_fit(tiny_lm / "lm", tmp_path, STEPS, ckpt=ddp_dir / f"step={STEPS - 1}.ckpt")
    assert_resumed_like(resumed, ddp_run)


def assert_resumed_like(resumed: list[dict], run: list[dict]) -> None:
    """Per rank: the resumed last step drew the same prompts and rollouts and ended at the
    same weights as the uninterrupted run."""
    for r in range(WORLD):
        (last,) = resumed[r]["rollouts"]       # only the last step was left
        for b, ref in zip(last, run[r]["rollouts"][-1], strict=True):
            assert [x.index for x in b.records] == [x.index for x in ref.records]
            assert torch.equal(b.tokens, ref.tokens), f"rank {r}: resumed rollouts differ"
        assert _max_diff(resumed[r]["weights"][-1], run[r]["weights"][-1]) < 1e-6


# ---------------------------------------------------------------------- the shipped config
def test_demo_config_runs_on_two_devices_with_no_extra_flags(tiny_lm, tmp_path):
    run_demo_config_on_two_devices(tiny_lm, tmp_path, "ddp", "--model.init_args.sample_every_n_steps=1")
    assert load_lm(tmp_path / "runs" / "rl").metadata["global_step"] == 1
    assert len(list(tmp_path.rglob("samples/step*.png"))) >= 1      # rank 0's grids only


def run_demo_config_on_two_devices(tiny_lm: Path, tmp_path: Path, strategy: str, *extra: str) -> None:
    """``arm-rl fit`` on the shipped demo config with ``--trainer.strategy=STRATEGY
    --trainer.devices=2`` and nothing else that matters (a tiny LM, one short step), in
    ``tmp_path``; fails with the end of stderr unless it exits 0 with distinct prompts per rank."""
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "lm").symlink_to(tiny_lm / "lm")
    exe = Path(sys.executable).with_name("arm-rl")
    cmd = [str(exe), "fit", "--config", str(REPO / "configs" / "rl" / "demo-grpo.yaml"),
           f"--trainer.strategy={strategy}", "--trainer.devices=2", "--trainer.max_steps=1",
           "--trainer.logger=false", "--model.init_args.group_size=2",
           "--data.init_args.prompts_per_step=1", *extra]
    # a launched rank's variables left in this process would make arm-rl wait for another rank
    launch = ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK", "NODE_RANK")
    env = {k: v for k, v in os.environ.items() if k not in launch} | {"OMP_NUM_THREADS": "1"}
    # its own session: on a timeout the rank Lightning launched goes down with it
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        _, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    assert proc.returncode == 0, err[-3000:]
    assert "same prompts" not in err, err[-3000:]
