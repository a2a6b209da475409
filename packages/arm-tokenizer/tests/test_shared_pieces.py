"""One of each shared piece: the atomic writer, the LR schedule, ConfigError, the
sentencepiece wrapper, deprecated aliases of moved names, and no import cycle."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest
from arm_tokenizer.framework.checkpoint import atomic_path, atomic_write_bytes
from arm_tokenizer.framework.configurable import ComponentImportError, ConfigError
from arm_tokenizer.schedules import warmup_cosine
from arm_tokenizer.spm import SentencePieceModel, train_sentencepiece
from arm_tokenizer.teachers.spm import BOS_ID, EOS_ID, SpmText, train_spm

CAPTIONS = [f"a {c} {s} on the {side}" for c in ("red", "green", "blue") for s in ("circle", "square")
            for side in ("left", "right")]


def test_atomic_path_replaces_in_one_step_and_cleans_up_on_error(tmp_path):
    target = tmp_path / "sub" / "f.bin"
    with atomic_path(target, fsync=False) as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(".f.bin.") and tmp.suffix == ".tmp"
        tmp.write_bytes(b"one")
        assert not target.exists()  # nothing visible until the block ends
    assert target.read_bytes() == b"one"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o666 & ~_umask()
    with pytest.raises(RuntimeError, match="half"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half-writ")
            raise RuntimeError("half written")
    assert target.read_bytes() == b"one"  # the old file is intact
    assert sorted(p.name for p in target.parent.iterdir()) == ["f.bin"]  # no temp left
    atomic_write_bytes(target, b"two", fsync=False)
    assert target.read_bytes() == b"two"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_warmup_cosine_one_schedule():
    assert [warmup_cosine(s, 4, 20, 0.1) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert warmup_cosine(4, 4, 20, 0.1) == pytest.approx(1.0)
    assert warmup_cosine(12, 4, 20, 0.0) == pytest.approx(0.5)
    assert warmup_cosine(20, 4, 20, 0.1) == pytest.approx(0.1)
    assert warmup_cosine(99, 4, None, 0.1) == 1.0 and warmup_cosine(99, 4, 4, 0.1) == 1.0


def test_moved_names_keep_a_deprecated_alias():
    import arm_tokenizer.lightning_module as module

    with pytest.warns(DeprecationWarning, match=r"arm_tokenizer\.lightning_module\.warmup_cosine moved to arm_tokenizer\.schedules"):
        assert module.warmup_cosine is warmup_cosine
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        module.nope  # noqa: B018


def test_config_error_is_one_class_with_where():
    e = ConfigError("must be > 0", file="cfg.yaml", line=3, key="model.lr")
    assert str(e) == "cfg.yaml:3: model.lr: must be > 0" and (e.file, e.line, e.key) == ("cfg.yaml", 3, "model.lr")
    assert str(ConfigError("plain")) == "plain" and str(ConfigError("m", file="f.yaml")) == "f.yaml: m"
    imp = ComponentImportError("no module foo", class_path="foo.Bar", module="foo")
    assert isinstance(imp, ConfigError) and str(imp) == "no module foo" and imp.module == "foo"


def test_teacher_spm_is_the_shared_wrapper_and_deterministic():
    proto = train_spm(CAPTIONS + CAPTIONS[::-1], vocab_size=40)
    assert proto == train_spm(list(reversed(CAPTIONS)), vocab_size=40)  # only the set counts
    sp = SpmText(proto)
    assert isinstance(sp, SentencePieceModel) and sp.proto == sp.model_proto == proto
    ids = sp.encode(["A Red circle"])[0]
    assert sp.decode(ids) == "a red circle"  # case-folded by the teacher's normaliser
    batch = sp.batch(["a red circle on the left", "blue"], max_len=5, bos=True, eos=True)
    assert batch.shape[1] <= 5 and batch[0, 0] == BOS_ID and batch[0, -1] == EOS_ID
    with pytest.raises(TypeError, match="single str"):
        sp.encode("a red circle")
    with pytest.raises(ValueError, match="pad=0, unk=1, bos=2, eos=3"):
        SpmText(train_sentencepiece(CAPTIONS, 40, unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1))


def test_teacher_trainer_imports_without_the_semantic_losses():
    # the former cycle: losses.siglip -> teachers.frozen -> teachers.toy -> teachers.trainer -> losses.siglip
    code = ("import sys, arm_tokenizer.teachers.lightning_module, arm_tokenizer.teachers.toy; "
            "print(sorted(m for m in ('arm_tokenizer.losses.siglip', 'arm_tokenizer.teachers.frozen') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
