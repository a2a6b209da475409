"""Renamed keyword arguments and flags keep their old spelling for one release
(:func:`arm_tokenizer.framework.deprecation.renamed_argument`, :func:`add_renamed_flag`)."""

from __future__ import annotations

import argparse

import pytest
from arm_tokenizer.framework.deprecation import (
    REQUIRED,
    add_renamed_flag,
    renamed_argument,
    renamed_attribute,
)


def test_renamed_argument_prefers_the_new_name_warns_on_the_old_and_refuses_both() -> None:
    assert renamed_argument("f", "old", "new", None, 2.0, 1.0) == 2.0
    assert renamed_argument("f", "old", "new", None, None, 1.0) == 1.0
    with pytest.warns(DeprecationWarning, match=r"f: old= is deprecated, use new= \(the old name goes"):
        assert renamed_argument("f", "old", "new", 3.0, None, 1.0) == 3.0
    with pytest.raises(TypeError, match="f: got both new= and its deprecated name old=; pass only new="):
        renamed_argument("f", "old", "new", 3.0, 3.0, 1.0)
    with pytest.raises(TypeError, match="f: missing the argument new="):
        renamed_argument("f", "old", "new", None, None, REQUIRED)


def test_renamed_flag_is_hidden_warns_and_fills_the_new_dest(capsys) -> None:
    p = argparse.ArgumentParser(prog="tool")
    group = p.add_argument_group("g")
    group.add_argument("--guidance-scale", type=float, nargs="+", default=[1.0])
    add_renamed_flag(group, "--cfg", "--guidance-scale")
    assert p.parse_args([]).guidance_scale == [1.0]
    assert p.parse_args(["--guidance-scale", "2", "3"]).guidance_scale == [2.0, 3.0]
    with pytest.warns(DeprecationWarning, match="tool: --cfg is deprecated, use --guidance-scale"):
        assert p.parse_args(["--cfg", "2", "3"]).guidance_scale == [2.0, 3.0]
    p.print_help()
    assert "--cfg" not in capsys.readouterr().out
    with pytest.raises(ValueError, match="--nope is not a flag of this parser"):
        add_renamed_flag(p, "--old", "--nope")


def test_renamed_attribute_reads_the_new_one_and_warns() -> None:
    class Box:
        old = renamed_attribute("Box", "old", "new")

        def __init__(self) -> None:
            self.new = 4.0

    with pytest.warns(DeprecationWarning, match="Box.old is deprecated: use new"):
        assert Box().old == 4.0
    with pytest.raises(AttributeError):
        Box().old = 1.0  # read-only: the new name is the one to set
