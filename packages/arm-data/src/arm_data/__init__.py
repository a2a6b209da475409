"""ARM component library: arm-data."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("arm-data")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0"
