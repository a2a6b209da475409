"""A tokenizer exported with a third-party plugin component, loaded where the plugin is missing:
the error names the component (kind, registered name, class path), its distribution and what
to ``pip install``; exports record where each component came from; old exports still load."""

from __future__ import annotations

import importlib
import json
import sys
import textwrap
from importlib import metadata

import pytest
import torch
from arm_tokenizer.encoders.cnn import CNNEncoder
from arm_tokenizer.framework import registry
from arm_tokenizer.framework.checkpoint import MissingComponentError
from arm_tokenizer.projections import LinearProjection
from arm_tokenizer.testing.toys import ToyDecoder
from arm_tokenizer.tokenizer import VisualTokenizer

MODULE = "armtest_plugin_quant"
DIST = "arm-test-plugin"
PLUGIN_SOURCE = '''
from arm_tokenizer.quantizers.fsq import FSQQuantizer


class PlugQuantizer(FSQQuantizer):
    """An FSQ under another name, as a third-party plugin would ship it."""

    def __init__(self, levels=(4, 4, 3)):
        super().__init__(levels=list(levels))
'''


class FakeDist:
    """An installed distribution as importlib.metadata shows it (name, version, entry points)."""

    def __init__(self, name: str, eps: list[tuple[str, str, str]], version: str) -> None:
        self.metadata = {"Name": name}
        self.version = version
        self.entry_points = [metadata.EntryPoint(n, v, g) for g, n, v in eps]


@pytest.fixture
def plugin(tmp_path, monkeypatch, fresh_registry):
    """The plugin module in a temp dir, registered as quantizer 'plugq' by distribution DIST.

    Yields a function that uninstalls it (module unimportable, entry point gone)."""
    src = tmp_path / "site"
    src.mkdir()
    (src / f"{MODULE}.py").write_text(textwrap.dedent(PLUGIN_SOURCE))
    monkeypatch.syspath_prepend(str(src))
    real = list(metadata.distributions())
    fake = FakeDist(DIST, [("arm.quantizers", "plugq", f"{MODULE}:PlugQuantizer")], version="0.3.1")
    monkeypatch.setattr(registry, "_distributions", lambda: [*real, fake])
    registry.refresh()

    def uninstall() -> None:
        monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(src)])
        monkeypatch.delitem(sys.modules, MODULE, raising=False)
        importlib.invalidate_caches()
        monkeypatch.setattr(registry, "_distributions", lambda: real)
        registry.refresh()

    def reinstall() -> None:
        monkeypatch.setattr(sys, "path", [str(src), *sys.path])
        importlib.invalidate_caches()

    yield uninstall, reinstall


def _export(path) -> None:
    plug = importlib.import_module(MODULE)
    torch.manual_seed(0)
    enc = CNNEncoder(patch_size=4, width=8, max_width=16, out_dim=3)
    tok = VisualTokenizer(enc, plug.PlugQuantizer(), ToyDecoder(in_dim=10, patch_size=4),
                          proj_out=LinearProjection(in_dim=3, out_dim=10), image_size=16)
    tok.save_pretrained(path)


def test_export_records_component_sources(tmp_path, plugin):
    _export(tmp_path / "tok")
    cfg = json.loads((tmp_path / "tok" / "config.json").read_text())
    by_path = {c["path"]: c for c in cfg["components"]}
    assert by_path["model.init_args.quantizer"] == {
        "path": "model.init_args.quantizer", "class_path": f"{MODULE}.PlugQuantizer", "kind": "quantizer",
        "name": "plugq", "distribution": DIST, "version": "0.3.1"}
    enc = by_path["model.init_args.encoder"]
    assert (enc["kind"], enc["name"], enc["distribution"]) == ("encoder", "cnn", "arm-tokenizer")
    assert by_path["model"]["class_path"] == "arm_tokenizer.tokenizer.VisualTokenizer"


def test_missing_plugin_names_component_distribution_and_install(tmp_path, plugin):
    uninstall, reinstall = plugin
    _export(tmp_path / "tok")
    uninstall()
    with pytest.raises(MissingComponentError) as e:
        VisualTokenizer.from_pretrained(tmp_path / "tok")
    msg = str(e.value)
    assert isinstance(e.value, ImportError)
    assert str(tmp_path / "tok" / "config.json") in msg
    assert "the quantizer 'plugq' at model.init_args.quantizer" in msg
    assert f"class {MODULE}.PlugQuantizer" in msg
    assert f"from distribution '{DIST}' 0.3.1" in msg
    assert f"`pip install {DIST}`" in msg
    assert f"No module named '{MODULE}'" in msg
    assert "no importable module prefix" not in msg
    reinstall()  # with the plugin back, the same export loads
    assert VisualTokenizer.from_pretrained(tmp_path / "tok").codebook_size == 48


def test_old_export_without_sources_still_loads_and_explains(tmp_path, plugin):
    uninstall, reinstall = plugin
    _export(tmp_path / "tok")
    cfg_path = tmp_path / "tok" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    del cfg["components"]  # as written before exports recorded component sources
    cfg_path.write_text(json.dumps(cfg))
    assert VisualTokenizer.from_pretrained(tmp_path / "tok").codebook_size == 48
    uninstall()
    with pytest.raises(MissingComponentError) as e:
        VisualTokenizer.from_pretrained(tmp_path / "tok")
    msg = str(e.value)
    assert f"the component at model.init_args.quantizer (class {MODULE}.PlugQuantizer)" in msg
    assert "does not record which distribution provides it" in msg
    assert f"provides the module '{MODULE}'" in msg and "pip install" in msg
    reinstall()
    assert VisualTokenizer.from_pretrained(tmp_path / "tok").codebook_size == 48
