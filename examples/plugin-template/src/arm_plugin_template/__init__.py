"""A minimal ARM plugin: a sign quantizer and a pre-quantization penalty loss."""

from arm_plugin_template.loss import PreQuantPenalty
from arm_plugin_template.quantizer import SignQuantizer

__all__ = ["PreQuantPenalty", "SignQuantizer"]
