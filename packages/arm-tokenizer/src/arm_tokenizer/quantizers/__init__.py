"""Quantizers (``arm.quantizers``): one adapter per vector-quantize-pytorch class, one output type."""

from arm_tokenizer.quantizers.base import Quantizer, QuantizerOutput, usage_stats

__all__ = ["Quantizer", "QuantizerOutput", "usage_stats"]
