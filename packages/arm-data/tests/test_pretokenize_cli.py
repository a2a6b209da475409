"""End to end: a real VisualTokenizer checkpoint -> `arm-data pretokenize shapes:train` ->
`arm-data train-text-tokenizer --shards` -> TokenDataModule batches."""

import shutil

import pytest
from arm_data.datamodules.tokens import TokenDataModule
from arm_data.formats import find_images
from arm_data.pretokenize import cli_main
from arm_data.shards import Manifest, iter_records, shard_name
from arm_data.text_tokenizer import TextTokenizer, train_text_tokenizer_command

VisualTokenizer = pytest.importorskip("arm_tokenizer.tokenizer").VisualTokenizer


@pytest.fixture(scope="module")
def tok_dir(save_tiny_tokenizer):
    return save_tiny_tokenizer(32)


def test_cli_shapes_to_batches(tok_dir, tmp_path, capsys):
    out = tmp_path / "shards"
    args = ["--tokenizer", str(tok_dir), "--source", "shapes:train", "--count", "6", "--out", str(out),
            "--shard-size", "4", "--workers", "2", "--questions", "2", "--no-progress"]
    assert cli_main(args) == 0
    assert "2/2 shards, 24 records" in capsys.readouterr().out  # 6 scenes x (pair + 2 QA + edit)

    # the codes are what the checkpoint's encoder gives for the rendered scene
    from arm_data.shapes.world import ShapesWorld

    vt = VisualTokenizer.from_pretrained(tok_dir)
    records = list(iter_records(out))
    world = ShapesWorld("train", seed=0, width=32, height=32)
    pair = [r for r in records if r.task == "pair"]
    assert [r.texts["text"] for r in pair] == [world[i].caption for i in range(6)]
    assert pair[2].image.codes == vt.encode(world[2].image)[0].tolist()
    edit = next(r for r in records if r.task == "edit")
    assert edit.target.codes == vt.encode(world[0].edit.target_image)[0].tolist()
    assert edit.texts["instruction"] == world[0].edit.instruction and "target_spec" in edit.extra

    # a lost shard is redone, byte-identical, by re-running the same command
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / shard_name(1)).unlink()
    assert not Manifest.load(copy).is_finished(copy, shard_name(1))
    assert cli_main([a if a != str(out) else str(copy) for a in args]) == 0
    assert (copy / shard_name(1)).read_bytes() == (out / shard_name(1)).read_bytes()

    assert train_text_tokenizer_command(["--shards", str(out), "--vocab-size", "400"]) == 0
    text = TextTokenizer.load(out)
    dm = TokenDataModule(str(out), seq_len=160, batch_size=2, val_fraction=0.0)
    assert dm.layout.text_vocab_size == text.vocab_size and dm.layout.codebook_size == 64
    assert dm.tokenizer_dir == str(tok_dir) and dm.text_tokenizer_path == str(out / "text_tokenizer.model")
    assert dm.task_names[:4] == ["t2i", "und", "edit", "text"] and "interleaved" in dm.task_names
    b = next(iter(dm.train_dataloader()))
    ids = b["input_ids"][0][b["doc_ids"][0] >= 0]
    images = find_images(dm.layout, ids)
    assert images and all((im.h, im.w) == (4, 4) for im in images)


def test_cli_errors(tok_dir, tmp_path):
    with pytest.raises(ValueError, match="give --count"):
        cli_main(["--tokenizer", str(tok_dir), "--source", "shapes:train", "--out", str(tmp_path)])
    with pytest.raises(ValueError, match="unknown ShapesWorld split 'nope'"):
        cli_main(["--tokenizer", str(tok_dir), "--source", "shapes:nope", "--count", "2", "--out", str(tmp_path)])
    with pytest.raises(FileNotFoundError, match="not a tokenizer checkpoint"):
        cli_main(["--tokenizer", str(tmp_path), "--source", "shapes:train", "--count", "2", "--out", str(tmp_path)])
    with pytest.raises(FileNotFoundError, match="no such dataset path"):
        cli_main(["--tokenizer", str(tok_dir), "--source", str(tmp_path / "x"), "--out", str(tmp_path)])
    with pytest.raises(ValueError, match="unknown task 'captions'.*Install the package that provides it"):
        cli_main(["--tokenizer", str(tok_dir), "--source", "shapes:train", "--count", "2", "--tasks", "captions",
                  "--out", str(tmp_path)])
