"""ARM component library: arm-core."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("arm-core")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0"
