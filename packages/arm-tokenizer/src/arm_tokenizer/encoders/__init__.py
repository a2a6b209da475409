"""Encoders (``arm.encoders``): images in [-1, 1] -> patch tokens ``(B, N, C)``.

Built-ins: ``timm`` (:class:`~arm_tokenizer.encoders.timm_encoder.TimmEncoder`, any timm
ViT/ConvNet incl. SigLIP2), ``cnn`` (:class:`~arm_tokenizer.encoders.cnn.CNNEncoder`) and
``hf_vision`` (:class:`~arm_tokenizer.encoders.hf_vision.HFVisionEncoder`, transformers
SigLIP / SigLIP2 / CLIP towers; needs the ``[hf]`` extra). Import them from their modules
(importing this package does not import timm or transformers).
"""

from arm_tokenizer.encoders.base import Encoder

__all__ = ["Encoder"]
