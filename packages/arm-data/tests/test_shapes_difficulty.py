"""ShapesWorld difficulty settings: the full world is unchanged, narrower worlds obey their sets."""

from __future__ import annotations

import hashlib
import json

import pytest
from arm_data.shapes import (
    DIFFICULTIES,
    Difficulty,
    ShapesWorld,
    evaluate_t2i,
    get_difficulty,
    scene_allowed,
)
from arm_data.shapes.difficulty import FULL_HELDOUT_PAIRS

# sha256 of the first 300 samples of each split of ShapesWorld(seed=0) as JSON, taken from
# the code before difficulties existed: the default world must draw exactly those scenes,
# captions, questions and edits (pure-Python random streams, the same on every machine).
FULL_DIGEST = "ba0b6b377b702c733f709c3fdbaac407c7a1e058c4da3121d97dd28272f5f101"


def test_full_world_draws_what_it_drew_before_difficulties() -> None:
    h = hashlib.sha256()
    for split in ("train", "val", "heldout"):
        world = ShapesWorld(split, 0)
        for i in range(300):
            h.update(json.dumps(world[i].to_dict(), sort_keys=True).encode())
    assert h.hexdigest() == FULL_DIGEST
    assert ShapesWorld("train", 0, difficulty="full").difficulty is DIFFICULTIES["full"]


@pytest.mark.parametrize("split", ["train", "val", "heldout"])
def test_demo_world_keeps_to_its_sets(split: str) -> None:
    d = DIFFICULTIES["demo"]
    world = ShapesWorld(split, 3, difficulty="demo")
    held = set(d.heldout_pairs)
    counts = set()
    for i in range(300):
        s = world[i]
        spec = s.spec
        counts.add(spec.count)
        assert spec.background.kind in d.backgrounds
        for o in spec.objects:
            assert o.shape in d.shapes and o.color in d.colors and o.size in d.sizes
        assert scene_allowed(spec, split, d)
        pairs = set(spec.pairs())
        assert bool(pairs & held) == (split == "heldout")
        for qa in s.qa:
            words = qa.question.lower().replace("?", "").split()
            assert not any(c in words for c in ("purple", "orange", "pink", "brown", "black", "cyan"))
            if qa.kind == "color":
                assert qa.answer in d.colors
        target = s.edit.target
        assert all(o.color in d.colors and o.shape in d.shapes and o.size in d.sizes for o in target.objects)
        if split != "heldout":
            assert not set(target.pairs()) & held
    assert counts == set(d.heldout_counts if split == "heldout" else d.train_counts)


def test_the_evaluator_reads_demo_scenes() -> None:
    world = ShapesWorld("heldout", 0, difficulty="demo")
    assert sum(evaluate_t2i(world[i].image, world[i].spec).strict for i in range(60)) >= 59


def test_custom_difficulty_from_a_mapping_as_yaml_gives_it() -> None:
    d = get_difficulty({"shapes": ["star", "circle"], "colors": ["red", "blue"],
                        "train_counts": [1], "heldout_counts": [1, 2]})
    assert d.shapes == ("circle", "star")            # the palette's order, not the listing's
    assert d.heldout_pairs == (("blue", "star"),)    # the full world's pairs inside the sets
    assert set(d.train_pairs) == {("red", "circle"), ("red", "star"), ("blue", "circle")}
    world = ShapesWorld("train", 0, difficulty=d)
    assert all(world[i].spec.count == 1 for i in range(50))
    assert "custom" in repr(world)


@pytest.mark.parametrize("value, message", [
    ("hard", "unknown ShapesWorld difficulty 'hard'; choose one of full, demo"),
    ({"colour": ["red"]}, r"unknown field\(s\) \['colour'\]"),
    ({"colors": ["red", "mauve"]}, r"colors: unknown \['mauve'\]"),
    ({"colors": "red"}, "colors must be a list of names"),
    ({"train_counts": [0, 1]}, r"train_counts must hold integers in 1\.\.4"),
    ({"shapes": ["square"], "colors": ["red", "orange"]}, "no held-out"),
    ({"shapes": ["circle", "star"], "colors": ["green", "blue"],
      "heldout_pairs": [["green", "circle"], ["blue", "circle"]]}, r"\['circle'\] appear only in held-out pairs"),
    ({"heldout_pairs": [["red", "cube"]]}, "are not \\(color, shape\\) pairs"),
])
def test_bad_difficulty_says_what_is_wrong(value, message) -> None:
    with pytest.raises(ValueError, match=message):
        get_difficulty(value)


def test_presets_and_round_trip() -> None:
    assert DIFFICULTIES["full"].heldout_pairs == FULL_HELDOUT_PAIRS
    demo = DIFFICULTIES["demo"]
    again = Difficulty(**{k: v for k, v in demo.to_dict().items()})
    assert again == demo
    json.dumps(demo.to_dict())


def test_data_module_and_pretokenize_source_take_a_difficulty() -> None:
    from arm_data.pretokenize import make_source
    from arm_data.shapes.datamodule import ShapesWorldDataModule

    dm = ShapesWorldDataModule(batch_size=4, train_length=8, val_length=4, test_length=4, difficulty="demo")
    batch = next(iter(dm.train_dataloader()))
    for spec in batch["specs"]:
        assert all(o["shape"] in DIFFICULTIES["demo"].shapes for o in json.loads(spec)["objects"])
    with pytest.raises(ValueError, match="unknown ShapesWorld difficulty"):
        ShapesWorldDataModule(difficulty="hard")
    source = make_source("shapes:train", ["pair"], 4, difficulty="demo")
    assert source.describe()["difficulty"]["name"] == "demo"
    assert "difficulty" not in make_source("shapes:train", ["pair"], 4).describe()


def test_a_one_size_world_still_asks_yes_no_questions() -> None:
    d = get_difficulty({"shapes": ["circle", "star"], "colors": ["red", "blue"], "sizes": ["large"],
                        "heldout_pairs": [["red", "star"]], "train_counts": [1, 2]})
    world = ShapesWorld("train", 0, 32, 32, difficulty=d)
    answers = {qa.answer for i in range(200) for qa in world[i].qa if qa.kind == "attribute_yesno"}
    assert answers == {"yes", "no"}         # "no" names a size from the full palette
    assert all(o.size == "large" for i in range(200) for o in world[i].spec.objects)
