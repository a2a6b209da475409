import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # toy_components for registry/CLI tests


@pytest.fixture
def fresh_registry(monkeypatch):
    """A registry that forgets its cache before and after the test."""
    from arm_tokenizer import registry

    registry.refresh()
    yield registry
    registry.refresh()
