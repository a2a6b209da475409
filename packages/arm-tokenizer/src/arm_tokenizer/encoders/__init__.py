"""Encoders (``arm.encoders``): images in [-1, 1] -> patch tokens ``(B, N, C)``.

Built-ins: ``timm`` (:class:`~arm_tokenizer.encoders.timm_encoder.TimmEncoder`, any timm
ViT/ConvNet incl. SigLIP2) and ``cnn`` (:class:`~arm_tokenizer.encoders.cnn.CNNEncoder`).
Import them from their modules (importing this package does not import timm).
"""

from arm_tokenizer.encoders.base import Encoder

__all__ = ["Encoder"]
