"""EMA codebooks under DDP: two CPU (gloo) processes, different data per rank.

The failure mode: vector-quantize-pytorch decides ``sync_codebook`` when the quantizer is
*constructed*; Lightning constructs the model before DDP initializes the process group, so
each rank's EMA update only sees its own data and the codebooks drift apart. Our adapters
decide at forward time. The test builds every quantizer before ``init_process_group`` (as
Lightning does) and checks:

- the raw library class with its default (``sync_codebook=None``) ends with *different*
  codebooks on the two ranks (the bug this guards against);
- ``sync_codebook=False`` differs too (documented opt-out);
- our auto mode ends with identical codebooks, equal to one process training on the union
  of both ranks' batches (the all-reduced EMA update is exactly that);
- the same holds for the residual VQ adapter.
"""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

STEPS = 3
DIM, K = 4, 8


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _data(rank: int, step: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1000 * rank + step)
    # Different distributions per rank, so per-rank EMA updates must disagree.
    return torch.randn(2, 16, DIM, generator=g) + 3.0 * rank


def _make(kind: str):
    from arm_tokenizer.quantizers.residual_vq import ResidualVQQuantizer
    from arm_tokenizer.quantizers.vq import VQQuantizer
    from vector_quantize_pytorch import VectorQuantize

    torch.manual_seed(0)  # identical initial codebooks on every rank
    common = dict(codebook_size=K, decay=0.5, threshold_ema_dead_code=0)
    if kind == "library_default":
        return VectorQuantize(dim=DIM, **common)  # sync_codebook=None -> decided now: False
    if kind == "ours_off":
        return VQQuantizer(dim=DIM, sync_codebook=False, **common)
    if kind == "ours_auto":
        return VQQuantizer(dim=DIM, **common)
    if kind == "ours_residual_auto":
        return ResidualVQQuantizer(dim=DIM, num_quantizers=2, **common)
    raise ValueError(kind)


KINDS = ("library_default", "ours_off", "ours_auto", "ours_residual_auto")


def _codebook(module: torch.nn.Module) -> torch.Tensor:
    from vector_quantize_pytorch import vector_quantize_pytorch as vqp

    return torch.cat([m.embed.detach().flatten() for m in module.modules() if isinstance(m, vqp.Codebook)])


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    models = {k: _make(k) for k in KINDS}  # built BEFORE the process group, like Lightning
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        for kind, model in models.items():
            model.train()
            for step in range(STEPS):
                model(_data(rank, step))
            torch.save(_codebook(model), os.path.join(out_dir, f"{kind}_{rank}.pt"))
        flags = {k: bool(getattr(m, "codebook_sync_active", False)) for k, m in models.items()}
        torch.save(flags, os.path.join(out_dir, f"flags_{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory):
    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    out = tmp_path_factory.mktemp("ddp")
    # fork: the children inherit the imported torch/vector-quantize-pytorch (a spawned child
    # spends ~10 s re-importing them on a loaded 2-core machine); torch resets its thread
    # pools in forked children. spawn where fork does not exist.
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    _make("ours_auto")  # import the quantizer modules in the parent before forking
    mp.start_processes(_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True, start_method=method)
    load = lambda name: torch.load(out / name, weights_only=True)  # noqa: E731
    return {k: (load(f"{k}_0.pt"), load(f"{k}_1.pt")) for k in KINDS}, load("flags_0.pt")


def test_library_default_desyncs_when_built_before_ddp_init(ddp_results):
    books, _ = ddp_results
    a, b = books["library_default"]
    assert not torch.allclose(a, b, atol=1e-3), "expected the library default to drift apart across ranks"


def test_sync_off_desyncs(ddp_results):
    books, flags = ddp_results
    a, b = books["ours_off"]
    assert not flags["ours_off"]
    assert not torch.allclose(a, b, atol=1e-3)


@pytest.mark.parametrize("kind", ["ours_auto", "ours_residual_auto"])
def test_auto_sync_keeps_ranks_identical(ddp_results, kind):
    books, flags = ddp_results
    a, b = books[kind]
    assert flags[kind], "auto mode should have switched codebook sync on inside the process group"
    torch.testing.assert_close(a, b)


def test_synced_update_equals_single_process_on_union(ddp_results):
    books, _ = ddp_results
    ref = _make("ours_auto").train()
    for step in range(STEPS):
        ref(torch.cat([_data(0, step), _data(1, step)]))
    assert not ref.codebook_sync_active  # no process group here
    torch.testing.assert_close(books["ours_auto"][0], _codebook(ref), atol=1e-5, rtol=1e-5)
