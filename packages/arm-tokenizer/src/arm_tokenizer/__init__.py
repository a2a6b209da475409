"""ARM semantic visual tokenizer and the registry of the ARM component library."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("arm-tokenizer")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0"
