"""TokenDataModule: batch layout, packing, task mix, dropout, val split, exact resumption."""

import hashlib

import lightning.pytorch as pl
import pytest
import torch
from arm_data.datamodules.tokens import IGNORE_INDEX, TokenDataModule, doc_length
from arm_data.formats import TASKS
from arm_data.pretokenize import PatchColorTokenizer, RawRecord, pretokenize
from arm_data.shards import iter_records
from arm_data.text_tokenizer import TextTokenizer

COLORS = ["red", "green", "blue", "yellow", "purple", "orange"]


class Source:
    tasks = ("pair", "vqa", "edit")

    def __len__(self):
        return 60

    def describe(self):
        return {"kind": "dm-test"}

    def load(self, i, size):
        g = torch.Generator().manual_seed(i)
        a = torch.randint(0, 256, (3, *size), generator=g, dtype=torch.uint8)
        b = torch.randint(0, 256, (3, *size), generator=g, dtype=torch.uint8)
        c = COLORS[i % 6]
        out = [RawRecord("pair", {"text": f"a {c} square number {i}"}, [a], f"k{i}", i),
               RawRecord("vqa", {"question": "what color is it?", "answer": c}, [a], f"k{i}q", i),
               RawRecord("edit", {"instruction": f"make it {COLORS[(i + 1) % 6]}"}, [a, b], f"k{i}e", i)]
        if i % 10 == 0:  # a two-round conversation
            turns = [{"role": "user", "text": "color?"}, {"role": "assistant", "text": c},
                     {"role": "user", "text": "shape?"}, {"role": "assistant", "text": "square"}]
            out.append(RawRecord("vqa", {"conversation": turns}, [a], f"k{i}c", i))
        if i % 10 == 5:  # malformed: the assistant speaks first
            out.append(RawRecord("vqa", {"conversation": [{"role": "assistant", "text": "hi"}]}, [a], f"k{i}m", i))
        return out


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tokens")
    pretokenize(PatchColorTokenizer(16, 4, 4), Source(), d, shard_size=25, num_workers=0, progress=False)
    texts = [v for r in iter_records(d) for v in r.texts.values()]
    TextTokenizer.train(texts, vocab_size=300, save_to=d)
    return d


def make(data_dir, **kw):
    kw.setdefault("seq_len", 96)
    kw.setdefault("batch_size", 4)
    kw.setdefault("val_fraction", 0.2)
    return TokenDataModule(str(data_dir), **kw)


def batches(loader, n=None):
    out = []
    for b in loader:
        out.append(b)
        if n is not None and len(out) == n:
            break
    return out


def same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a) and a.keys() == b.keys()


def check_batch(dm, b):
    L = dm.layout
    ids, tgt, pos, doc, task = (b[k] for k in ("input_ids", "targets", "position_ids", "doc_ids", "task_ids"))
    assert ids.shape == (4, 96) and all(t.dtype == torch.long for t in b.values())
    for r in range(ids.shape[0]):
        live = doc[r] >= 0
        n = int(live.sum())
        assert live[:n].all() and not live[n:].any()  # padding only at the end
        assert (ids[r, n:] == L.pad_id).all() and (tgt[r, n:] == IGNORE_INDEX).all() and (task[r, n:] == -1).all()
        for i in range(n):
            start = i == 0 or doc[r, i] != doc[r, i - 1]
            assert (pos[r, i] == 0) == start
            if start:
                assert ids[r, i] == L.bos_id and (i == 0 or doc[r, i] == doc[r, i - 1] + 1)
                assert L.special_name(int(ids[r, i + 1])).strip("<>") == TASKS[int(task[r, i])]
            if tgt[r, i] != IGNORE_INDEX:  # a target never crosses a document boundary
                assert i + 1 < n and doc[r, i + 1] == doc[r, i] and tgt[r, i] == ids[r, i + 1]
            if i + 1 < n and doc[r, i + 1] != doc[r, i]:
                assert tgt[r, i] == IGNORE_INDEX and ids[r, i] == L.eos_id
    # targets of t2i/edit tokens: image codes, <eoi>, <eos>; of und: text or <eos>
    t2i = (task == TASKS.index("t2i")) & (tgt != IGNORE_INDEX)
    ok = L.is_image_id(tgt[t2i]) | (tgt[t2i] == L.eoi_id) | (tgt[t2i] == L.eos_id)
    assert ok.all()
    und = (task == TASKS.index("und")) & (tgt != IGNORE_INDEX)
    assert (L.is_text_id(tgt[und]) | (tgt[und] == L.eos_id)).all()


def test_layout_and_vocab_size(data_dir):
    dm = make(data_dir)
    assert dm.layout.codebook_size == 64 and dm.layout.text_vocab_size == 300
    assert dm.vocab_size == dm.layout.total_size


def test_packed_batches_respect_documents(data_dir):
    dm = make(data_dir)
    bs = batches(dm.train_dataloader())
    assert len(bs) == dm.batches_per_epoch
    for b in bs:
        check_batch(dm, b)
    docs_per_row = [int(b["doc_ids"][r].max()) + 1 for b in bs for r in range(4)]
    assert max(docs_per_row) >= 2  # packing happened (documents are ~25-45 tokens)
    fill = sum(int((b["doc_ids"] >= 0).sum()) for b in bs) / (len(bs) * 4 * 96)
    assert fill > 0.6


def test_doc_length_matches_built_documents(data_dir):
    dm = make(data_dir, task_weights={"t2i": 1, "und": 1, "edit": 1, "text": 1})
    dm.setup()
    corpus = dm._train.corpus
    for task, docs in corpus.docs.items():
        assert docs
        for item in docs:
            assert doc_length(task, item) == len(corpus.build(task, item, None))


def test_conversations_and_malformed_ones(data_dir):
    dm = make(data_dir, val_fraction=0.0)
    with pytest.warns(UserWarning, match="6 training conversations do not alternate"):
        dm.setup()
    convs = [d for d in dm._train.corpus.docs["und"] if len(d[0]) == 4]
    assert len(convs) == 6
    seq = dm._train.corpus.build("und", convs[0], None)
    assert seq.input_ids.count(dm.layout.eos_id) == 2 and seq.input_ids.count(dm.layout.special_id("<user>")) == 2


def test_padded_mode_one_document_per_row(data_dir):
    dm = make(data_dir, packing=False)
    b = next(iter(dm.train_dataloader()))
    check_batch(dm, b)
    assert int(b["doc_ids"].max()) == 0


def test_deterministic_and_seed_dependent(data_dir):
    a = batches(make(data_dir).train_dataloader(), 3)
    b = batches(make(data_dir).train_dataloader(), 3)
    c = batches(make(data_dir, seed=1).train_dataloader(), 3)
    assert all(same(x, y) for x, y in zip(a, b, strict=True))
    assert not same(a[0], c[0])
    # epochs differ from each other
    dm = make(data_dir)
    e0 = batches(dm.train_dataloader())
    e1 = batches(dm.train_dataloader())
    assert not same(e0[0], e1[0])


def test_task_weights_control_the_mix(data_dir):
    dm = make(data_dir, task_weights={"t2i": 1.0})
    b = next(iter(dm.train_dataloader()))
    assert set(b["task_ids"][b["task_ids"] >= 0].unique().tolist()) == {TASKS.index("t2i")}
    dm = make(data_dir, task_weights={"t2i": 0.5, "und": 0.25, "edit": 0.15, "text": 0.1}, batches_per_epoch=40)
    counts = torch.zeros(4)
    for b in dm.train_dataloader():
        starts = b["position_ids"] == 0
        starts &= b["doc_ids"] >= 0
        counts += torch.bincount(b["task_ids"][starts], minlength=4)
    frac = counts / counts.sum()
    assert frac[0] > frac[1] > frac[3] > 0 and frac[2] > 0


def test_condition_dropout(data_dir):
    dm = make(data_dir, task_weights={"t2i": 1.0}, p_drop_caption=1.0)
    b = next(iter(dm.train_dataloader()))
    starts = (b["position_ids"] == 2) & (b["doc_ids"] >= 0)  # the token after <bos> <t2i>
    assert (b["input_ids"][starts] == dm.layout.null_id).all()
    dm = make(data_dir, task_weights={"edit": 1.0}, p_drop_instruction=0, p_drop_source=0, p_drop_both=1.0)
    b = next(iter(dm.train_dataloader()))
    per_doc = (b["input_ids"] == dm.layout.null_id).sum()
    assert per_doc == 2 * int(((b["position_ids"] == 0) & (b["doc_ids"] >= 0)).sum())


def test_val_split_is_fixed_and_held_out(data_dir):
    dm = make(data_dir, val_batches=2)
    v1, v2 = batches(dm.val_dataloader()), batches(dm.val_dataloader())
    assert len(v1) == 2 and all(same(a, b) for a, b in zip(v1, v2, strict=True))
    train_caps = {tuple(d[0]) for d in dm._train.corpus.docs["t2i"]}
    val_caps = {tuple(d[0]) for d in dm._val.corpus.docs["t2i"]}
    assert val_caps and not (train_caps & val_caps)  # every caption names its scene number


def test_manual_resume_mid_epoch(data_dir):
    for workers in (0, 2):
        full = batches(make(data_dir, num_workers=workers).train_dataloader())
        dm = make(data_dir, num_workers=workers)
        batches(dm.train_dataloader(), 3)
        state = dm.state_dict()
        assert state["epoch"] == 0 and state["batch"] == 3
        dm2 = make(data_dir, num_workers=workers)
        dm2.load_state_dict(state)
        rest = batches(dm2.train_dataloader())
        assert len(rest) == len(full) - 3 and all(same(a, b) for a, b in zip(rest, full[3:], strict=True))
        # the next epoch after the resumed one is epoch 1, as without interruption
        assert same(next(iter(dm2.train_dataloader())), make(data_dir).batch(1, 0))


class _TinyLM(pl.LightningModule):
    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, 8)
        self.out = torch.nn.Linear(8, vocab)
        self.seen: list[str] = []

    def training_step(self, batch, i):
        self.seen.append(hashlib.sha1(batch["input_ids"].numpy().tobytes()).hexdigest())
        logits = self.out(self.emb(batch["input_ids"]))
        return torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch["targets"].flatten(), ignore_index=-100)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _trainer(tmp_path, max_steps, callbacks=()):
    return pl.Trainer(max_steps=max_steps, accelerator="cpu", logger=False, enable_progress_bar=False,
                      enable_model_summary=False, limit_val_batches=0, default_root_dir=tmp_path,
                      callbacks=list(callbacks), enable_checkpointing=bool(callbacks))


def test_lightning_checkpoint_resume_gives_identical_batches(data_dir, tmp_path):
    dm = make(data_dir, batches_per_epoch=5)
    ref = _TinyLM(dm.vocab_size)
    _trainer(tmp_path / "ref", 8).fit(ref, datamodule=dm)  # crosses an epoch boundary
    assert len(ref.seen) == 8

    ckpt = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ck", every_n_train_steps=3, save_top_k=-1)
    first = _TinyLM(dm.vocab_size)
    _trainer(tmp_path / "a", 3, [ckpt]).fit(first, datamodule=make(data_dir, batches_per_epoch=5))
    path = next((tmp_path / "ck").glob("*step=3*.ckpt"))
    assert torch.load(path, weights_only=False)["TokenDataModule"]["batch"] == 3

    resumed = _TinyLM(dm.vocab_size)
    _trainer(tmp_path / "b", 8).fit(resumed, datamodule=make(data_dir, batches_per_epoch=5), ckpt_path=path)
    assert first.seen + resumed.seen == ref.seen


def test_bad_arguments(data_dir, tmp_path):
    with pytest.raises(ValueError, match="unknown tasks \\['vqa'\\]"):
        make(data_dir, task_weights={"vqa": 1.0})
    with pytest.raises(ValueError, match="longer than seq_len=10"):
        make(data_dir, seq_len=10).setup()
    with pytest.raises(FileNotFoundError, match="train-text-tokenizer"):
        TokenDataModule(str(data_dir), text_tokenizer=str(tmp_path / "none.model"))
    with pytest.raises(Exception, match="arm-data pretokenize"):
        TokenDataModule(str(tmp_path))
