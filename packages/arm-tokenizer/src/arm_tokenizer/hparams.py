"""Deprecated: moved to :mod:`arm_tokenizer.framework.hparams`; this path goes in the next release.

Importing it warns and gives the same module object as ``arm_tokenizer.framework.hparams``.
"""

from arm_tokenizer.framework.deprecation import alias_module

alias_module(__name__, "arm_tokenizer.framework.hparams")
