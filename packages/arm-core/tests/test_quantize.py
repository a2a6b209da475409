"""Weight-only quantized decode (arm_core.quantize, torchao) and the pipelines' / CLI's
``speculative`` and ``quantize`` options.

Tolerances (int8 per-output-channel weights, fp32 activations), each about 3x what was
measured when they were set:

- logits: max |quantized - fp32| <= 8% of max |fp32 logit| (measured 2-3% on both
  shapes), cosine >= 0.998 (measured 0.9996);
- next-token distributions: total variation <= 0.05 (measured 0.007-0.014).
"""

from __future__ import annotations

import importlib.util
import sys

import pytest
import torch
from arm_core.checkpoint import save_lm
from arm_core.config import Config
from arm_core.constraints import ImageSpanConstraint
from arm_core.generation import Engine
from arm_core.model import GPT
from arm_core.quantize import QuantizationError, quantize, quantized_mode

needs_torchao = pytest.mark.skipif(importlib.util.find_spec("torchao") is None,
                                   reason="the quant extra: pip install 'arm-core[quant]'")

REL_MAX, MIN_COS, MAX_TV = 0.08, 0.998, 0.05


def _close(ref: torch.Tensor, out: torch.Tensor) -> dict[str, float]:
    rel = float((out - ref).abs().max() / ref.abs().max())
    cos = float(torch.nn.functional.cosine_similarity(out.flatten(), ref.flatten(), 0))
    tv = float(0.5 * (out.softmax(-1) - ref.softmax(-1)).abs().sum(-1).max())
    assert rel <= REL_MAX and cos >= MIN_COS and tv <= MAX_TV, (rel, cos, tv)
    return {"rel": rel, "cos": cos, "tv": tv}


def _logits(model: GPT, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        h = model.forward_hidden(ids)
        return model.head(h), model.image_head(h)


@needs_torchao
@pytest.mark.parametrize("shape", ["pipelines_tiny", "7b_width_slice"])
def test_int8_logits_close_to_fp32(shape):
    if shape == "pipelines_tiny":           # the pipelines' tests' LM shape, ARM-like vocab
        cfg = Config.from_name("tiny", n_embd=64, intermediate_size=128).with_vocab(
            400, 320, 16, text_vocab_size=300)
        scale = 5.0                          # logits of std ~0.8, not the 0.02 init's ~0
    else:                                    # one layer at 7B width: n_embd 3,584, 28 query /
        cfg = Config.from_dict({**Config.from_name(  # 4 kv heads of 128; MLP at 1/4 of 18,944
            "arm-7b", n_layer=1, intermediate_size=4736, max_seq_len=64).to_dict(),
            "name": "7b-width-slice"}).with_vocab(2048, 1024, 1024, text_vocab_size=1000)
        scale = 1.0
    torch.manual_seed(0)
    model = GPT(cfg).eval()
    if scale != 1.0:
        with torch.no_grad():
            for p in model.parameters():
                if p.dim() == 2:
                    p.mul_(scale)
    ids = torch.randint(0, cfg.vocab_size, (2, 12))
    ref, ref_img = _logits(model, ids)
    assert quantize(model, "int8") is model and quantized_mode(model) == "int8"
    # every linear weight is int8, the codes-only head included
    assert "Int8" in type(model.visual_head.weight).__name__
    assert "Int8" in type(model.layers[0].mlp.down_proj.weight).__name__
    out, out_img = _logits(model, ids)
    print(shape, "logits", _close(ref, out), "image head", _close(ref_img, out_img))


@needs_torchao
def test_int8_engine_generates_constrained_images():
    cfg = Config.from_name("tiny")
    torch.manual_seed(0)
    model = GPT(cfg).eval()
    quantize(model, "int8")
    constraint = ImageSpanConstraint(50, 51, 64, 32, shape_tokens={52: (2, 3)})
    for spec in (0, 3):
        out = Engine(model, speculative=spec).generate([[1, 2, 52, 50], [3, 52, 50]], 7,
                                                      constraint=constraint, eos_ids=[51], seed=0)
        assert ((out.tokens[:, :6] >= 64) & (out.tokens[:, :6] < 96)).all()
        assert (out.tokens[:, 6] == 51).all() and torch.isfinite(out.logprobs).all()


def test_int4_on_cpu_and_missing_torchao_say_what_to_do(monkeypatch):
    model = GPT(Config.from_name("tiny"))
    with pytest.raises(QuantizationError, match="int4 .* runs on CUDA only.*use int8 on CPU"):
        quantize(model, "int4")
    with pytest.raises(QuantizationError, match="unknown mode 'int3'"):
        quantize(model, "int3")
    assert quantize(model, None) is model and quantize(model, "none") is model
    monkeypatch.setitem(sys.modules, "torchao.quantization", None)     # import fails
    with pytest.raises(QuantizationError, match=r"pip install 'arm-core\[quant\]'"):
        quantize(model, "int8")


# ---- pipelines and CLI -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """An untrained tiny LM exported with a text tokenizer and a toy visual tokenizer."""
    from arm_data.text_tokenizer import TextTokenizer
    from arm_tokenizer.testing.toys import tiny_projected_tokenizer

    root = tmp_path_factory.mktemp("quant")
    text = TextTokenizer.train(["a red circle", "a blue square", "a green triangle"] * 4,
                               vocab_size=300)
    text.save(root / "tt")
    torch.manual_seed(0)
    vis = tiny_projected_tokenizer().eval()
    vis.save_pretrained(root / "tok")
    layout = text.layout(codebook_size=vis.codebook_size, max_grid_h=8, max_grid_w=8)
    cfg = Config.from_name("tiny", n_embd=64, intermediate_size=128).with_vocab(
        layout.total_size, layout.image_offset, layout.codebook_size,
        text_vocab_size=layout.text_vocab_size)
    model = GPT(cfg)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(10)
    save_lm(root / "lm", model.eval(), cfg, layout=layout, text_tokenizer=root / "tt",
            visual_tokenizer_dir=root / "tok")
    return root


@needs_torchao
def test_pipeline_options(exported):
    from arm_core.pipelines import TextToImage

    plain = TextToImage.from_pretrained(exported / "lm")
    spec = TextToImage.from_pretrained(exported / "lm", speculative=4)
    assert spec.engine.speculative == 4 and plain.engine.speculative == 0
    prompts = ["a red circle", "a blue square"]
    a = plain(prompts, temperature=0, return_codes=True)[1]
    b = spec(prompts, temperature=0, return_codes=True)[1]
    assert torch.equal(a, b)                             # greedy: the same images
    q = TextToImage.from_pretrained(exported / "lm", quantize="int8", speculative=4)
    assert quantized_mode(q.model) == "int8" and quantized_mode(plain.model) == "none"
    images, codes = q(prompts, temperature=1.0, seed=0, return_codes=True)
    assert codes.shape == a.shape and len(images) == 2
    # the checkpoint on disk stays fp32
    from safetensors.torch import load_file

    sd = load_file(next((exported / "lm").glob("*.safetensors")))
    assert all(t.dtype == torch.float32 for t in sd.values())


@needs_torchao
def test_cli_options(exported, tmp_path, capsys):
    from arm_core.cli import main

    with pytest.raises(SystemExit) as e:
        main(["generate", "t2i", "--lm", str(exported / "lm"), "--prompt", "a red circle",
              "--speculative", "4", "--quantize", "int8", "--out", str(tmp_path / "out")])
    assert e.value.code == 0 and len(list((tmp_path / "out").glob("*.png"))) == 1
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(["generate", "t2i", "--lm", str(exported / "lm"), "--prompt", "a red circle",
              "--quantize", "int4", "--device", "cpu", "--out", str(tmp_path / "out4")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "int4" in err and "CUDA only" in err and "Traceback" not in err


@needs_torchao
def test_evaluate_records_decode_options(exported, tmp_path, capsys, monkeypatch):
    """`arm-lm evaluate --speculative N --quantize int8` loads the pipelines with those decode
    options and records them (the ShapesWorld scoring itself is tested in test_evaluate.py)."""
    import json

    import arm_core.evaluate as ev
    from arm_core.cli import main

    seen = {}

    def fake_scoring(t2i, edit, und, **kw):
        seen.update(speculative=t2i.engine.speculative, quantized=quantized_mode(t2i.model))
        return {"summary": {}, "seconds": 0.0}

    monkeypatch.setattr(ev, "evaluate_pipelines", fake_scoring)
    out = tmp_path / "m.json"
    with pytest.raises(SystemExit) as e:
        main(["evaluate", "--lm", str(exported / "lm"), "--speculative", "4", "--quantize", "int8",
              "--out", str(out)])
    assert e.value.code == 0 and seen == {"speculative": 4, "quantized": "int8"}
    assert json.loads(out.read_text())["decode"] == {"speculative": 4, "quantize": "int8"}
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(["evaluate", "--lm", str(exported / "lm"), "--quantize", "int4", "--device", "cpu",
              "--out", str(tmp_path / "x.json")])
    assert e.value.code == 2 and "CUDA only" in capsys.readouterr().err
