"""Deprecated: moved to :mod:`arm_rl.lightning_module`; this path goes in the next release.

Importing it warns and gives the same module object as ``arm_rl.lightning_module``.
"""

from arm_tokenizer.framework.deprecation import alias_module

alias_module(__name__, "arm_rl.lightning_module")
