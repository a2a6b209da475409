"""The decode step and the sampler are graph-break free under torch.compile (fullgraph)."""

from __future__ import annotations

import pytest
import torch
from arm_core.config import Config
from arm_core.constraints import ImageSpanConstraint
from arm_core.generation import Engine, Guidance, sample_image_step, sample_step
from arm_core.model import GPT
from arm_core.sampling import SamplingParams

CONSTRAINT = ImageSpanConstraint(boi_id=50, eoi_id=51, image_offset=64, codebook_size=32,
                                 shape_tokens={52: (2, 3)})


def _model(image_position_slots: int = 0) -> GPT:
    torch.manual_seed(0)
    model = GPT(Config.from_name("tiny", image_position_slots=image_position_slots))
    if image_position_slots:
        torch.nn.init.normal_(model.image_pos_embed.weight)
    return model.eval()


@pytest.mark.parametrize("image_position_slots", [0, 8])
def test_decode_step_and_sampler_have_no_graph_breaks(image_position_slots):
    torch._dynamo.reset()
    model = _model(image_position_slots)
    model.setup_kv_cache(2, 16)
    ids = torch.tensor([[1, 2, 3], [0, 4, 5]])
    valid = ids.ne(0)
    with torch.no_grad():
        model.prefill(ids, (valid.long().cumsum(1) - 1).clamp(min=0), valid)
        ex = torch._dynamo.explain(model.decode_step)(
            torch.tensor([[7], [8]]), torch.tensor([[3], [2]]), torch.tensor([3]))
    assert ex.graph_break_count == 0 and ex.graph_count == 1, ex.break_reasons
    with torch.no_grad():
        ex = torch._dynamo.explain(model.decode_step_image)(
            torch.tensor([[9], [9]]), torch.tensor([[4], [3]]), torch.tensor([4]))
    assert ex.graph_break_count == 0 and ex.graph_count == 1, ex.break_reasons
    ex = torch._dynamo.explain(sample_image_step)(
        torch.randn(4, 32), torch.rand(2, 32), SamplingParams(0.7, 5, 0.9), 2, 1.5, 1.0, True, 64)
    assert ex.graph_break_count == 0 and ex.graph_count == 1, ex.break_reasons
    tables = CONSTRAINT.tables(96)
    state, _ = tables.scan(ids, valid)
    ex = torch._dynamo.explain(sample_step)(
        torch.randn(4, 96), state, tables, torch.rand(2, 96), SamplingParams(0.7, 5, 0.9),
        2, 1.5, 1.0, True)
    assert ex.graph_break_count == 0 and ex.graph_count == 1, ex.break_reasons


@pytest.mark.parametrize("image_position_slots", [0, 8])
def test_compiled_engine_matches_eager(image_position_slots):
    # backend="eager" captures full graphs (fullgraph=True raises on any break) without
    # paying for inductor code generation in the test suite; bench_core.py runs inductor.
    torch._dynamo.reset()
    model = _model(image_position_slots)
    kw = dict(temperature=0.7, top_k=5, top_p=0.95, constraint=CONSTRAINT, seed=0,
              guidance=Guidance([[52, 50], [52, 50]], guidance_scale=1.5), return_unguided_logprobs=True)
    prompts = [[1, 2, 52, 50], [4, 52, 50]]
    eager = Engine(model).generate(prompts, 9, **kw)
    compiled = Engine(model, compile=True, compile_backend="eager").generate(prompts, 9, **kw)
    assert torch.equal(eager.tokens, compiled.tokens)
    assert torch.allclose(eager.logprobs, compiled.logprobs)
    assert torch.allclose(eager.unguided_logprobs, compiled.unguided_logprobs)


def test_compile_options_instead_of_mode():
    # inductor options (e.g. CUDA graphs + coordinate-descent tuning) reach torch.compile;
    # a mode and options together are refused, as torch.compile refuses them
    torch._dynamo.reset()
    model = _model()
    with pytest.raises(ValueError, match="compile_mode or compile_options"):
        Engine(model, compile=True, compile_mode="reduce-overhead",
               compile_options={"triton.cudagraphs": True})
    eager = Engine(model).generate([[1, 2, 52, 50]], 8, temperature=0, constraint=CONSTRAINT)
    opts = Engine(model, compile=True, compile_backend="eager",
                  compile_options={"coordinate_descent_tuning": True})
    assert not opts._cudagraphs
    assert torch.equal(opts.generate([[1, 2, 52, 50]], 8, temperature=0,
                                     constraint=CONSTRAINT).tokens, eager.tokens)
    assert Engine(model, compile=True, compile_backend="eager",
                  compile_options={"triton.cudagraphs": True})._cudagraphs


def test_compiled_engine_serves_many_batch_sizes():
    # the codes-only sampler sees contiguous logits at every step (prefill's slice too), so
    # one compile per batch shape, not two: fullgraph turns the recompile limit into an error
    torch._dynamo.reset()
    model = _model()
    eng = Engine(model, max_seq_len=32, compile=True, compile_backend="eager")
    for B in range(1, 7):
        out = eng.generate([[1, 52, 50]] * B, 8, temperature=0.9, top_k=5, constraint=CONSTRAINT,
                           seed=0, eos_ids=[51])
        assert out.tokens[:, 6].eq(51).all()
