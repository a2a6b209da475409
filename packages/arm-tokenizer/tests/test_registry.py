"""The registry: discovery through (fake) entry points, errors, environment variables."""

from __future__ import annotations

from importlib import metadata

import pytest
from arm_tokenizer.framework import registry


class FakeDist:
    def __init__(self, name: str, eps: list[tuple[str, str, str]], version: str = "1.0") -> None:
        self.metadata = {"Name": name}
        self.version = version
        self.entry_points = [metadata.EntryPoint(n, v, g) for g, n, v in eps]


@pytest.fixture
def fake_dists(monkeypatch, fresh_registry):
    dists: list[FakeDist] = []
    monkeypatch.setattr(registry, "_distributions", lambda: list(dists))
    return dists


def test_lists_components_with_their_distribution(fake_dists):
    fake_dists.append(FakeDist("arm-tokenizer", [("arm.encoders", "toy", "toy_components:ToyPart")]))
    fake_dists.append(FakeDist("my-plugin", [("arm.encoders", "other", "toy_components:OtherPart")]))
    comps = registry.list_components("encoder")
    assert [(c.name, c.dist) for c in comps] == [("other", "my-plugin"), ("toy", "arm-tokenizer")]
    assert registry.get("encoder", "toy").__name__ == "ToyPart"
    obj = registry.create("encoder", "other", dim=3)
    assert obj.dim == 3 and type(obj).__name__ == "OtherPart"
    # kinds may be named by their group or plural too
    assert registry.list_components("arm.encoders") == registry.list_components("encoders") == comps


def test_unknown_name_suggests_close_matches(fake_dists):
    fake_dists.append(FakeDist("arm-tokenizer", [("arm.quantizers", "fsq", "toy_components:ToyPart"),
                                                 ("arm.quantizers", "residual_fsq", "toy_components:ToyPart")]))
    with pytest.raises(registry.UnknownComponentError) as err:
        registry.get("quantizer", "fsqq")
    assert "Did you mean: fsq" in str(err.value)
    with pytest.raises(registry.UnknownComponentError, match="Known kinds"):
        registry.list_components("quantiser-ish-thing")


def test_two_distributions_claiming_one_name_is_an_error_naming_both(fake_dists):
    fake_dists.append(FakeDist("plugin-a", [("arm.rewards", "clip", "toy_components:ToyPart")]))
    fake_dists.append(FakeDist("plugin-b", [("arm.rewards", "clip", "toy_components:OtherPart")]))
    with pytest.raises(registry.DuplicateComponentError) as err:
        registry.get("reward", "clip")
    assert "plugin-a" in str(err.value) and "plugin-b" in str(err.value)


def test_same_distribution_seen_twice_is_not_a_duplicate(fake_dists):
    eps = [("arm.rewards", "r", "toy_components:ToyPart")]
    fake_dists.extend([FakeDist("plugin-a", eps), FakeDist("plugin_a", eps)])
    assert registry.get("reward", "r").__name__ == "ToyPart"


def test_stale_metadata_of_a_moved_class_behind_the_installed_one_is_ignored(fake_dists):
    # an editable install's fresh metadata first on sys.path, a stale src/*.egg-info after it
    # still naming the module the class moved from: the first copy wins, as for imports
    fake_dists.append(FakeDist("plugin-a", [("arm.rewards", "r", "toy_components:ToyPart")]))
    fake_dists.append(FakeDist("plugin_a", [("arm.rewards", "r", "toy_components_old:ToyPart")]))
    assert [c.target for c in registry.list_components("reward")] == ["toy_components:ToyPart"]
    assert registry.get("reward", "r").__name__ == "ToyPart"


def test_broken_plugin_is_reported_once_and_skipped(fake_dists):
    fake_dists.append(FakeDist("good", [("arm.decoders", "ok", "toy_components:ToyPart")]))
    fake_dists.append(FakeDist("broken-plugin", [("arm.decoders", "bad", "no_such_module_xyz:Thing")]))
    with pytest.warns(RuntimeWarning, match="broken-plugin"):
        loaded = registry.load_all("decoder")
    assert [c.name for c in loaded] == ["ok"]
    registry.load_all("decoder")  # a second attempt does not report again
    errors = registry.load_errors()
    assert len(errors) == 1
    assert "broken-plugin" in errors[0] and "no_such_module_xyz" in errors[0] and "bad" in errors[0]
    with pytest.raises(registry.PluginLoadError, match="broken-plugin"):
        registry.get("decoder", "bad")


def test_env_var_restricts_third_party_plugins(fake_dists, monkeypatch):
    fake_dists.append(FakeDist("arm-core", [("arm.lms", "gpt", "toy_components:ToyPart")]))
    fake_dists.append(FakeDist("plugin-a", [("arm.lms", "a", "toy_components:ToyPart")]))
    fake_dists.append(FakeDist("plugin-b", [("arm.lms", "b", "toy_components:ToyPart")]))
    names = lambda: [c.name for c in registry.list_components("lm")]  # noqa: E731
    assert names() == ["a", "b", "gpt"]
    for value, expected in [("none", ["gpt"]), ("plugin_b", ["b", "gpt"]), ("all", ["a", "b", "gpt"])]:
        monkeypatch.setenv(registry.ENV_PLUGINS, value)
        registry.refresh()
        assert names() == expected, value


def test_env_var_registers_ad_hoc_components(fake_dists, monkeypatch):
    monkeypatch.setenv(registry.ENV_EXTRA, "encoder:adhoc=toy_components:OtherPart; model:m=toy_components:ToyModule")
    registry.refresh()
    comp = registry.find("encoder", "adhoc")
    assert comp.dist == "<env>" and comp.load().__name__ == "OtherPart"
    monkeypatch.setenv(registry.ENV_EXTRA, "garbage")
    registry.refresh()
    with pytest.raises(registry.RegistryError, match="kind:name=module:Class"):
        registry.list_components()


def test_plugin_defined_kind_is_discovered(fake_dists):
    fake_dists.append(FakeDist("plugin-a", [("arm.samplers", "fancy", "toy_components:ToyPart")]))
    assert "sampler" in [k.name for k in registry.list_kinds()]
    assert registry.get("sampler", "fancy").__name__ == "ToyPart"


def test_resolve_by_class_name_and_create_errors(fake_dists):
    fake_dists.append(FakeDist("arm-tokenizer", [("arm.encoders", "toy", "toy_components:ToyPart")]))
    assert registry.resolve("ToyPart").name == "toy"
    assert registry.resolve("toy").class_path == "toy_components.ToyPart"
    assert registry.resolve("nothing") is None
    with pytest.raises(TypeError, match="It takes: dim, levels"):
        registry.create("encoder", "toy", width=3)


def test_discovery_is_lazy_and_cached(fake_dists, monkeypatch):
    calls = []
    monkeypatch.setattr(registry, "_distributions", lambda: calls.append(1) or [])
    registry.refresh()
    assert calls == []  # nothing read until asked
    registry.list_components()
    registry.list_components()
    assert calls == [1]


def test_builtin_components_are_registered_through_entry_points(fresh_registry):
    """The real installed metadata: arm-tokenizer's own components come from its pyproject."""
    comps = [c for c in registry.list_components() if c.dist == "arm-tokenizer"]
    assert comps, "arm-tokenizer registers its built-ins through entry points"
