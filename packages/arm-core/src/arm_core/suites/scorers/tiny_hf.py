"""Tiny random transformers checkpoints for the model-backed scorers' tests and examples.

No weights can be downloaded in tests, so these builders write the same kind of directory
a real checkpoint is — transformers' own config classes, random weights and a processor,
all through ``save_pretrained`` — and the scorers then run the exact loading code real
weights use (``AutoModel`` / ``AutoModelForImageTextToText`` + ``AutoProcessor``):

- :func:`build_tiny_siglip`: a SigLIP, SigLIP2 (NaFlex) or CLIP dual encoder with a word-level
  ``tokenizers`` tokenizer trained offline;
- :func:`build_tiny_qwen2_vl`: a Qwen2-VL with a byte-level BPE tokenizer trained offline
  (with Qwen's chat and vision special tokens), Qwen2-VL's image and video processors and a
  chat template in Qwen's format. "10" is not a token of it, so it writes ratings the way
  Qwen's tokenizer does ("1" then "0").

Each takes well under a second to build on a CPU. Needs ``transformers`` (``arm-core[hf]``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["TINY_TEXTS", "QWEN_CHAT_TEMPLATE", "build_tiny_siglip", "build_tiny_qwen2_vl"]

#: Text the tiny tokenizers are trained on.
TINY_TEXTS = (
    "a red circle on the left", "a green square on the right", "a blue triangle above a yellow circle",
    "is there a red circle in the image", "does this image show a blue square", "answer yes or no",
    "Yes No yes no", "rate it with a single number from 0 to 9",
    "the first is the original the second is an edited version of it",
)

#: Qwen2-VL's chat format (user turns of images then text), as its released template writes it.
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tiny_siglip(directory: str | os.PathLike, family: str = "siglip", seed: int = 0,
                      image_size: int = 32) -> Path:
    """A tiny random SigLIP (``family="siglip"``), SigLIP2 (``"siglip2"``) or CLIP (``"clip"``)
    dual encoder at ``directory``."""
    # deferred: transformers and tokenizers are the optional [hf] extra (a test helper)
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    directory = Path(directory)
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(list(TINY_TEXTS), trainers.WordLevelTrainer(special_tokens=["<pad>", "<unk>", "</s>"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>",
                                   eos_token="</s>", model_max_length=16)
    text = dict(vocab_size=tok.get_vocab_size(), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, max_position_embeddings=16, pad_token_id=0, eos_token_id=2,
                bos_token_id=2)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  image_size=image_size, patch_size=8)
    torch.manual_seed(seed)
    if family == "siglip":
        # deferred: transformers is the optional [hf] extra
        from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel, SiglipProcessor

        model = SiglipModel(SiglipConfig(text_config=text, vision_config=vision))
        proc = SiglipProcessor(image_processor=SiglipImageProcessor(size={"height": image_size, "width": image_size}),
                               tokenizer=fast)
    elif family == "siglip2":     # NaFlex: patches at the image's own aspect ratio, up to num_patches
        # deferred: transformers is the optional [hf] extra
        from transformers import (
            Siglip2Config,
            Siglip2ImageProcessor,
            Siglip2Model,
            Siglip2Processor,
        )

        v2 = {k: v for k, v in vision.items() if k != "image_size"}
        model = Siglip2Model(Siglip2Config(text_config=text, vision_config={**v2, "num_patches": 16}))
        proc = Siglip2Processor(image_processor=Siglip2ImageProcessor(patch_size=8, max_num_patches=16),
                                tokenizer=fast)
    elif family == "clip":
        # deferred: transformers is the optional [hf] extra
        from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

        model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
        ip = CLIPImageProcessor(size={"shortest_edge": image_size},
                                crop_size={"height": image_size, "width": image_size})
        proc = CLIPProcessor(image_processor=ip, tokenizer=fast)
    else:
        raise ValueError(f"family must be siglip, siglip2 or clip, got {family!r}")
    model.save_pretrained(directory)
    proc.save_pretrained(directory)
    return directory


def build_tiny_qwen2_vl(directory: str | os.PathLike, seed: int = 0, pixels: int = 56 * 56) -> Path:
    """A tiny random Qwen2-VL (2 text layers of width 32, 1 vision block) with its processor.

    ``pixels`` bounds the image processor's resize (56x56 = 4 merged image tokens an image).
    """
    # deferred: transformers and tokenizers are the optional [hf] extra (a test helper)
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        PreTrainedTokenizerFast,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    directory = Path(directory)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                "<|image_pad|>", "<|video_pad|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator([*TINY_TEXTS, "user assistant"] * 4,
                            trainers.BpeTrainer(vocab_size=320, special_tokens=specials,
                                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    ids: dict[str, Any] = {s: tok.token_to_id(s) for s in specials}
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    cfg = Qwen2VLConfig(
        text_config=dict(vocab_size=tok.get_vocab_size(), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                         max_position_embeddings=1024, bos_token_id=ids["<|endoftext|>"],
                         eos_token_id=ids["<|im_end|>"],
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                          "mrope_section": [2, 3, 3]}),
        vision_config=dict(depth=1, embed_dim=32, hidden_size=32, num_heads=2, mlp_ratio=2, patch_size=14,
                           spatial_merge_size=2, temporal_patch_size=2),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    torch.manual_seed(seed)
    Qwen2VLForConditionalGeneration(cfg).save_pretrained(directory)
    proc = Qwen2VLProcessor(image_processor=Qwen2VLImageProcessor(min_pixels=pixels, max_pixels=pixels),
                            tokenizer=fast, video_processor=Qwen2VLVideoProcessor(),
                            chat_template=QWEN_CHAT_TEMPLATE)
    proc.save_pretrained(directory)
    return directory
