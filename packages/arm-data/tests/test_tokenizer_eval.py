"""`evaluate_tokenizer` / `arm-data shapes eval-tokenizer`: the numbers move the right way."""

import json
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from arm_data.shapes.cli import shapes_command
from arm_data.shapes.tokenizer_eval import (
    evaluate_tokenizer,
    object_neighbourhoods,
    object_probe,
    scene_images,
    shapes_scenes,
)
from arm_tokenizer.testing.toys import tiny_random_tokenizer
from torch import nn


class OracleTokenizer(nn.Module):
    """Decodes exactly what it encoded (a lookup table); its token features are pixels weighted
    by saturation, 4x4-pooled (the objects are saturated, the backgrounds are not), so they
    carry the object's color."""

    image_size = (64, 64)
    tokens_per_image = 16
    codebook_size = 4096

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, x):
        sat = (x.amax(1, keepdim=True) - x.amin(1, keepdim=True)).clamp(min=0) ** 2
        f = F.adaptive_avg_pool2d(torch.cat([x * sat, sat], 1), 4).flatten(2).transpose(1, 2)
        return SimpleNamespace(features=f)

    def encode(self, x):
        start = len(self.seen)
        self.seen += list(x)
        return torch.arange(start, start + x.shape[0]).unsqueeze(1).repeat(1, 16)

    def decode(self, idx):
        return torch.stack([self.seen[int(i)] for i in idx[:, 0]])


def test_perfect_reconstruction_parses_back():
    res = evaluate_tokenizer(OracleTokenizer(), n=24, probe_train=120, probe_test=60,
                             object_probe_train=0)
    assert res["parse_back_strict"] == 1.0
    assert set(res["parse_back_by_clause"]) >= {"count", "presence", "color"}
    assert all(v == 1.0 for v in res["parse_back_by_clause"].values())
    assert res["psnr"] > 60 and res["ssim"] > 0.99
    assert res["probe_color"] >= 0.8         # chance is 1 in 10 colors
    assert res["retrieval_r1_ridge"] is None  # no text encoder given


def test_random_tokenizer_does_not_parse_back(tmp_path, capsys):
    torch.manual_seed(0)
    vt = tiny_random_tokenizer(image_size=64)
    vt.save_pretrained(tmp_path / "vt")
    out = tmp_path / "eval.json"
    assert shapes_command(["eval-tokenizer", "--tokenizer", str(tmp_path / "vt"), "--n", "16",
                           "--probe-train", "40", "--probe-test", "20", "--object-probe-train", "40",
                           "--object-probe-test", "20", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res == json.loads(capsys.readouterr().out)
    assert res["parse_back_strict"] < 0.2 and res["psnr"] < 25
    assert res["parse_back_by_clause"]["presence"] < 0.5  # noise has no recognisable shapes
    assert 0 < res["codebook_usage"] <= 1 and res["tokens_per_image"] == 64
    assert 0 <= res["probe_color"] <= 1 and 0 <= res["probe_shape"] <= 1
    op = res["object_probe"]
    assert sum(op["n"].values()) > 20  # every object of the 20 test scenes
    assert all(0 <= v <= 1 for attr in ("color", "shape") for v in op[attr].values() if v is not None)


def _objects_at(*cells):
    """A stand-in sample whose objects sit at the centres of the given (row, col) cells of a 4x4 grid."""
    objs = [SimpleNamespace(y=(r + 0.5) / 4, x=(c + 0.5) / 4) for r, c in cells]
    return SimpleNamespace(spec=SimpleNamespace(objects=objs, count=len(objs)))


def test_object_neighbourhoods_reads_the_cells_around_each_object():
    f = torch.arange(1.0, 17.0).view(1, 16, 1)  # token (r, c) holds 4r + c + 1
    rows = object_neighbourhoods(f, [_objects_at((0, 0), (2, 1))], radius=1)
    assert rows.tolist() == [[0, 0, 0, 0, 1, 2, 0, 5, 6],   # the corner: outside the grid is zero
                             [5, 6, 7, 9, 10, 11, 13, 14, 15]]
    assert object_neighbourhoods(f, [_objects_at((3, 3))], radius=0).tolist() == [[16.0]]
    with pytest.raises(ValueError, match="square grid"):
        object_neighbourhoods(torch.zeros(1, 12, 1), [_objects_at((0, 0))])


def _shape_features(samples, local: bool):
    """Token features (8x8 grid) holding each object's shape one-hot: at the object's own cell
    when ``local``, else summed over every token (the scene's shapes without their places)."""
    from arm_data.shapes.palette import SHAPES

    by_image = {scene_images([s])[0].numpy().tobytes(): s for s in samples}

    def features_of(x):
        out = torch.zeros(len(x), 64, len(SHAPES))
        for b, image in enumerate(x):
            for o in by_image[image.numpy().tobytes()].spec.objects:
                k = SHAPES.index(o.shape)
                if local:
                    out[b, min(7, int(o.y * 8)) * 8 + min(7, int(o.x * 8)), k] += 1
                else:
                    out[b, :, k] += 1
        return out
    return features_of


def test_object_probe_tells_local_from_scene_level_shape():
    train, test = shapes_scenes("train", 150, 1, 64), shapes_scenes("val", 80, 0, 64)
    local = object_probe(_shape_features(train + test, local=True), train, test)
    scene = object_probe(_shape_features(train + test, local=False), train, test)
    assert local["n"] == scene["n"] and min(local["n"].values()) > 10
    assert all(v >= 0.95 for v in local["shape"].values())
    # A bag of the scene's shapes names a lone object's shape, but not which object has which.
    assert scene["shape"]["single"] >= 0.95
    assert scene["shape"]["three_plus"] < 0.7
    assert local["color"]["single"] < 0.6  # no color in these features


def test_object_probe_by_pair_tells_factorized_from_entangled_shape():
    # At the object's cell: its shape one-hot (colour-free), or its (colour, shape) pair one-hot
    # (shape coded jointly with colour: a held-out pair's feature never fires in training).
    from arm_data.shapes.palette import COLORS, SHAPES

    train, test = shapes_scenes("train", 200, 1, 64), shapes_scenes("heldout", 120, 0, 64)
    by_image = {scene_images([s])[0].numpy().tobytes(): s for s in train + test}

    def features(joint):
        def features_of(x):
            out = torch.zeros(len(x), 64, len(COLORS) * len(SHAPES))
            for b, image in enumerate(x):
                for o in by_image[image.numpy().tobytes()].spec.objects:
                    k = SHAPES.index(o.shape) + (len(SHAPES) * list(COLORS).index(o.color) if joint else 0)
                    out[b, min(7, int(o.y * 8)) * 8 + min(7, int(o.x * 8)), k] += 1
            return out
        return features_of

    factorized = object_probe(features(False), train, test)
    entangled = object_probe(features(True), train, test)
    assert factorized["n_by_pair"] == entangled["n_by_pair"] and min(factorized["n_by_pair"].values()) > 20
    assert factorized["shape_by_pair"]["heldout_pair"] >= 0.95
    assert entangled["shape_by_pair"]["seen_pair"] >= 0.95
    assert entangled["shape_by_pair"]["heldout_pair"] < 0.4


def test_missing_tokenizer_dir_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="is not a directory"):
        shapes_command(["eval-tokenizer", "--tokenizer", str(tmp_path / "nope")])
