"""Quantizer list/int arguments: a string, a dict or a lone number is refused with a message
naming the argument, the value given and an example (never silently split into characters)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from arm_tokenizer.quantizers.fsq import FSQQuantizer
from arm_tokenizer.quantizers.lfq import LFQQuantizer
from arm_tokenizer.quantizers.residual_fsq import ResidualFSQQuantizer
from arm_tokenizer.quantizers.residual_vq import ResidualVQQuantizer
from arm_tokenizer.quantizers.vq import VQQuantizer

BAD_LEVELS = [
    ("2222", TypeError),         # used to build 4 x 2 levels
    ("8,5,5", TypeError),        # used to fail with "invalid literal for int()"
    (b"8555", TypeError),
    (8, TypeError),
    ({"a": 8, "b": 5}, TypeError),
    ({8, 5}, TypeError),
    ([8, 5.0, 5], TypeError),
    ([8, "5", 5], TypeError),
    ([8, True], TypeError),
    ([8, 1, 5], ValueError),
    ([], ValueError),
]


@pytest.mark.parametrize("cls", [FSQQuantizer, ResidualFSQQuantizer], ids=lambda c: c.__name__)
@pytest.mark.parametrize("levels,exc", BAD_LEVELS, ids=[repr(b[0]) for b in BAD_LEVELS])
def test_bad_levels_are_refused_with_a_clear_message(cls, levels, exc):
    with pytest.raises(exc) as e:
        cls(levels=levels)
    msg = str(e.value)
    assert cls.__name__ in msg and "levels" in msg
    assert "levels=[8, 5, 5, 5]" in msg  # an example of the right form
    assert repr(levels) in msg  # the value given


def test_string_levels_message_quotes_the_value():
    with pytest.raises(TypeError) as e:
        FSQQuantizer(levels="8,5,5")
    assert "str '8,5,5'" in str(e.value) and "invalid literal" not in str(e.value)


@pytest.mark.parametrize("levels", [[8, 5, 5], (8, 5, 5), np.array([8, 5, 5]), torch.tensor([8, 5, 5]),
                                    [np.int64(8), 5, 5]], ids=["list", "tuple", "numpy", "tensor", "np-int"])
def test_good_levels_are_accepted(levels):
    q = FSQQuantizer(levels=levels)
    assert q.levels == [8, 5, 5] and q.codebook_size == 200 and q.dim == 3
    r = ResidualFSQQuantizer(levels=levels, num_quantizers=2)
    assert r.levels == [8, 5, 5] and r.num_codebooks == 2


@pytest.mark.parametrize("make,name", [
    (lambda: VQQuantizer(dim=4, codebook_size="1024"), "codebook_size"),
    (lambda: VQQuantizer(dim="4", codebook_size=8), "dim"),
    (lambda: VQQuantizer(dim=4, codebook_size=[8]), "codebook_size"),
    (lambda: LFQQuantizer(codebook_size="16"), "codebook_size"),
    (lambda: LFQQuantizer(codebook_size=16.0), "codebook_size"),
    (lambda: ResidualVQQuantizer(dim=4, num_quantizers="2", codebook_size=8), "num_quantizers"),
    (lambda: ResidualVQQuantizer(dim=4, num_quantizers=2, codebook_size=(8, 8)), "codebook_size"),
    (lambda: ResidualFSQQuantizer(levels=[4, 4], num_quantizers="2"), "num_quantizers"),
    (lambda: FSQQuantizer(levels=[4, 4], dim="2"), "dim"),
], ids=lambda x: x if isinstance(x, str) else "")
def test_int_arguments_refuse_strings_and_lists(make, name):
    with pytest.raises(TypeError) as e:
        make()
    msg = str(e.value)
    assert f"{name} must be an int" in msg and f"e.g. {name}=" in msg


def test_int_arguments_below_minimum():
    with pytest.raises(ValueError, match=r"VQQuantizer: codebook_size must be >= 2, got 1"):
        VQQuantizer(dim=4, codebook_size=1)
    with pytest.raises(ValueError, match=r"ResidualVQQuantizer: num_quantizers must be >= 1, got 0"):
        ResidualVQQuantizer(dim=4, num_quantizers=0, codebook_size=8)
