"""Image-code rows started from the visual tokenizer's code geometry (arm_core.code_init)."""

from __future__ import annotations

import pytest
import torch
from arm_core.code_init import code_vectors, init_code_rows
from arm_core.config import Config
from arm_core.lightning_module import LMTrainer
from arm_core.model import GPT
from arm_tokenizer.encoders.cnn import CNNEncoder
from arm_tokenizer.projections import LinearProjection
from arm_tokenizer.quantizers.fsq import FSQQuantizer
from arm_tokenizer.testing.toys import ToyDecoder
from arm_tokenizer.tokenizer import VisualTokenizer


def _tokenizer() -> VisualTokenizer:
    # 2^5 = 32 codes: the tiny preset's image block
    return VisualTokenizer(CNNEncoder(patch_size=8, width=8, max_width=16, out_dim=16),
                           FSQQuantizer(levels=[2, 2, 2, 2, 2]), ToyDecoder(in_dim=16, patch_size=8),
                           proj_in=LinearProjection(16, 5), proj_out=LinearProjection(5, 16),
                           image_size=32).eval()


def _explained(rows: torch.Tensor, vectors: torch.Tensor) -> float:
    """Fraction of the rows' (centred) variance a linear map of the code vectors explains."""
    z = vectors - vectors.mean(0)
    w = rows.float() - rows.float().mean(0)
    coef = torch.linalg.lstsq(z, w).solution
    return 1.0 - float((w - z @ coef).pow(2).sum() / w.pow(2).sum())


def _image_rows(model: GPT) -> torch.Tensor:
    c = model.config
    return model.embed_tokens.weight[c.image_offset: c.image_offset + c.image_codebook_size].detach()


def test_code_vectors_are_the_quantizers_grid_points() -> None:
    vec = code_vectors(_tokenizer())
    assert vec.shape == (32, 5)
    assert len({tuple(v.tolist()) for v in vec}) == 32          # one distinct point per id
    assert set(vec.unique().tolist()) == {-1.0, 1.0}            # FSQ levels 2: two values per dim


def test_rows_follow_the_code_geometry_and_keep_their_scale() -> None:
    vec = code_vectors(_tokenizer())
    torch.manual_seed(0)
    model = GPT(Config.from_name("tiny", separate_visual_head=True))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    init_code_rows(model, vec, share=0.5, generator=torch.Generator().manual_seed(0))
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"embed_tokens.weight", "visual_head.weight"}
    c = model.config
    text = torch.cat([before["embed_tokens.weight"][: c.image_offset],
                      before["embed_tokens.weight"][c.image_offset + c.image_codebook_size:]])
    assert torch.equal(text, torch.cat([after["embed_tokens.weight"][: c.image_offset],
                                        after["embed_tokens.weight"][c.image_offset + c.image_codebook_size:]]))
    # random rows: 5 regressors explain about 5/32 of 32 rows by chance; half the variance is shared
    assert _explained(before["embed_tokens.weight"][c.image_offset: c.image_offset + 32], vec) < 0.35
    assert _explained(_image_rows(model), vec) > 0.45
    assert _explained(model.visual_head.weight.detach(), vec) > 0.45
    # codes one level apart start closer than codes far apart
    rows = torch.nn.functional.normalize(_image_rows(model), dim=-1)
    dist = torch.cdist(vec, vec)
    sim = rows @ rows.T
    near, far = dist == dist[dist > 0].min(), dist == dist.max()
    assert sim[near].mean() > sim[far].mean() + 0.2
    assert _image_rows(model).std().item() == pytest.approx(c.init_std, rel=0.25)


def test_rows_are_the_same_under_another_default_device() -> None:
    # Lightning builds the model under a default-device context (the GPU on a CUDA machine):
    # the CPU generator must still draw on the CPU, and the rows must not depend on it.
    # "meta" stands in for "cuda" here; before the fix this raised like CUDA did.
    vec = code_vectors(_tokenizer())
    rows = []
    for ctx in (torch.device("cpu"), torch.device("meta")):
        torch.manual_seed(0)
        model = GPT(Config.from_name("tiny", separate_visual_head=True))
        with ctx:
            init_code_rows(model, vec, share=0.5, generator=torch.Generator().manual_seed(0))
        rows.append(_image_rows(model))
    assert torch.equal(rows[0], rows[1])


def test_bad_inputs_say_what_is_wrong() -> None:
    model = GPT(Config.from_name("tiny"))
    with pytest.raises(ValueError, match=r"expected \(32, D\).*visual tokenizer"):
        init_code_rows(model, torch.zeros(16, 4))
    with pytest.raises(ValueError, match="share must be in"):
        init_code_rows(model, torch.zeros(32, 4), share=1.0)


def test_lm_trainer_code_init_share(tmp_path) -> None:
    _tokenizer().save_pretrained(tmp_path / "tok")
    explained = {}
    for share in (0.0, 0.5):
        m = LMTrainer(preset="tiny", export_dir="", code_init_share=share,
                      visual_tokenizer=str(tmp_path / "tok"))
        m.configure_model()
        explained[share] = _explained(_image_rows(m.model), code_vectors(_tokenizer()))
    assert explained[0.0] < 0.35 < 0.45 < explained[0.5]
    with pytest.raises(ValueError, match="needs the visual tokenizer.*code_init_share: 0"):
        LMTrainer(preset="tiny", export_dir="", code_init_share=0.5).configure_model()
    with pytest.raises(ValueError, match="must be in"):
        LMTrainer(preset="tiny", code_init_share=1.5)
    with pytest.raises(ValueError, match="init_from"):
        LMTrainer(preset="tiny", code_init_share=0.5, init_from=str(tmp_path))


def test_hf_start_gets_code_rows_at_the_text_rows_scale(tmp_path) -> None:
    from arm_core import hf
    from arm_data.vocab import VocabLayout

    layout = VocabLayout(text_vocab_size=20, codebook_size=32, max_grid_h=4, max_grid_w=4)
    layout.save(tmp_path / "vocab.json")
    torch.manual_seed(0)
    text_lm = GPT(Config.from_name("tiny", vocab_size=20, text_vocab_size=None, image_offset=0,
                                   image_codebook_size=0, separate_visual_head=False)).eval()
    with torch.no_grad():
        text_lm.embed_tokens.weight.mul_(3.0)      # a pretrained scale unlike the init's
    hf.save_hf(text_lm, tmp_path / "hf")
    _tokenizer().save_pretrained(tmp_path / "tok")
    m = LMTrainer(hf_dir=str(tmp_path / "hf"), vocab=str(tmp_path / "vocab.json"), export_dir="",
                  code_init_share=0.5, visual_tokenizer=str(tmp_path / "tok"))
    m.configure_model()
    rows = _image_rows(m.model)
    assert _explained(rows, code_vectors(_tokenizer())) > 0.45
    text_std = text_lm.embed_tokens.weight.std().item()
    assert (rows - rows.mean(0)).std().item() == pytest.approx(text_std * 0.5 ** 0.5, rel=0.3)
    ids = torch.randint(0, 20, (2, 12))
    with torch.no_grad():     # text behaviour unchanged
        assert torch.allclose(text_lm(ids), m.model.eval()(ids)[..., :20], atol=1e-5)


def test_missing_named_tokenizer_is_reported(tmp_path) -> None:
    m = LMTrainer(preset="tiny", export_dir="", code_init_share=0.5,
                  visual_tokenizer=str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="nowhere"):
        m.configure_model()
