"""``judge``: any understanding model as a yes/no judge; the reward is P(expected answer).

ARM rewards RL with strong vision-language judges (objects, attributes and relations for
T2I; instruction following and preservation for editing). Here a :class:`Judge` is
anything that answers yes/no questions about images with a probability of "yes"; the
:class:`JudgeReward` asks each image a few questions derived from its prompt record and
returns the mean probability of the expected answers.

Questions (:func:`questions_for`), all in ShapesWorld's own QA phrasing (the templates the
LM's VQA data used, so an arm-core model understands them):

- T2I: "Is there a {color} {shape}?" for every object the caption names (expected yes),
  and "Is the {shape} to the left of / above the {shape}?" for every relation it states
  (expected yes or no, from the scene);
- edit: "Is there a {color} {shape}?" for every object of the target scene (yes) and for
  every (color, shape) of the source that the edit removed (no);
- records may carry explicit ``questions`` [(question, "yes"|"no"), ...] instead.

The shipped judge, :class:`ARMJudge`, is an arm-core LM answering through its
understanding format (``<bos> <und> IMG <user> question <assistant>``): P(yes) is the
softmax over the first tokens of "yes" and "no" at the answer position. With
``checkpoint=None`` it uses the policy itself (bound by the trainer, evaluated without
gradient): the system improves its generation with its own understanding; with a
checkpoint it is a frozen copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from arm_core.checkpoint import load_lm
from arm_core.generation import left_pad
from arm_data.formats import ImageTokens, und_prompt
from arm_data.shapes.palette import REGIONS
from torch import Tensor

from arm_rl.rewards.base import Reward, RewardError, as_pil, task_schema

__all__ = ["Judge", "ARMJudge", "JudgeReward", "questions_for"]


class Judge:
    """A yes/no visual question answerer."""

    def bind(self, **context: Any) -> None:
        """Receive the trainer's context (see :meth:`Reward.bind`)."""

    def p_yes(self, images: Any, questions: list[str], codes: Tensor | None = None) -> Tensor:
        """``(N,)`` probability of "yes" for ``N`` (image, question) pairs."""
        raise NotImplementedError


def _relation_question(spec: Any, i: int, j: int, axis: str) -> tuple[str, str] | None:
    objs = spec.objects
    si, sj = objs[i].shape, objs[j].shape
    if si == sj or sum(o.shape == si for o in objs) > 1 or sum(o.shape == sj for o in objs) > 1:
        return None                    # "the circle" would be ambiguous
    (ri, ci), (rj, cj) = divmod(REGIONS.index(objs[i].region), 3), divmod(REGIONS.index(objs[j].region), 3)
    if axis == "x":
        return f"Is the {si} to the left of the {sj}?", "yes" if ci < cj else "no"
    return f"Is the {si} above the {sj}?", "yes" if ri < rj else "no"


def questions_for(record: Any) -> list[tuple[str, str]]:
    """(question, expected answer) pairs for a prompt record (see the module docstring)."""
    if getattr(record, "questions", None):
        return [(q, a) for q, a in record.questions]
    spec = getattr(record, "spec", None)
    if spec is None:
        raise RewardError(f"judge reward: {record.describe()} has neither a scene spec nor explicit "
                          "questions; add PromptRecord.questions")
    if task_schema(record.task) == "t2i":
        qs = [(f"Is there a {c} {s}?", "yes") for c, s in dict.fromkeys(spec.pairs())]
        for i, j, axis in record.relations or ():
            q = _relation_question(spec, i, j, axis)
            if q is not None:
                qs.append(q)
        return qs
    target = getattr(record, "target", None)
    if target is None:
        raise RewardError(f"judge reward: edit {record.describe()} has no target scene")
    kept = set(target.pairs())
    qs = [(f"Is there a {c} {s}?", "yes") for c, s in dict.fromkeys(target.pairs())]
    qs += [(f"Is there a {c} {s}?", "no") for c, s in dict.fromkeys(spec.pairs()) if (c, s) not in kept]
    return qs


class ARMJudge(Judge):
    """An arm-core LM as the judge (its understanding branch).

    Args:
        checkpoint: an exported arm-core LM directory (a frozen judge); None = the policy
            being trained, bound by the trainer (self-judging).
        tokenizer_dir: visual tokenizer used to encode images when no codes are given;
            None = the bound one / the checkpoint's.
        device: where a checkpoint judge runs.
        yes: the answer word for "yes".
        no: the answer word for "no".
        batch_size: (image, question) pairs per forward.
    """

    def __init__(self, checkpoint: str | None = None, tokenizer_dir: str | None = None,
                 device: str = "cpu", yes: str = "yes", no: str = "no", batch_size: int = 64) -> None:
        self.checkpoint, self.tokenizer_dir = checkpoint, tokenizer_dir
        self.device = torch.device(device)
        self.words, self.batch_size = (yes, no), batch_size
        self.model = self.layout = self.text = self.visual = None

    def bind(self, **context: Any) -> None:
        if self.checkpoint is None:
            self.model = context.get("policy")
            self.layout = context.get("layout")
            self.text = context.get("text_tokenizer")
        if self.visual is None:
            self.visual = context.get("visual_tokenizer")

    def _load(self) -> None:
        if self.model is not None:
            return
        if self.checkpoint is None:
            raise RewardError("ARMJudge(checkpoint=None) judges with the policy, but no policy was "
                              "bound; use it inside GRPOTrainer or give checkpoint=DIR")
        lm = load_lm(self.checkpoint, device=self.device)
        for p in lm.model.parameters():
            p.requires_grad_(False)
        self.model, self.layout, self.text = lm.model, lm.layout, lm.load_text_tokenizer()
        if self.visual is None or self.tokenizer_dir is not None:
            self.visual = lm.load_visual_tokenizer(self.tokenizer_dir, device=self.device)

    def answer_ids(self) -> tuple[int, int]:
        ids = [self.text.encode(w) for w in self.words]
        if not ids[0] or not ids[1] or ids[0][0] == ids[1][0]:
            raise RewardError(f"judge: the text tokenizer cannot tell {self.words[0]!r} from "
                              f"{self.words[1]!r} by their first token ({ids})")
        return ids[0][0], ids[1][0]

    @torch.no_grad()
    def p_yes(self, images: Any, questions: list[str], codes: Tensor | None = None) -> Tensor:
        self._load()
        if codes is None:
            if self.visual is None:
                raise RewardError("ARMJudge needs image codes or a visual tokenizer to encode images")
            codes = self.visual.encode(as_pil(images)).cpu()
        if self.visual is not None:
            h, w = self.visual.grid
        else:
            h = w = int(round(codes.shape[1] ** 0.5))
        yes_id, no_id = self.answer_ids()
        dev = next(self.model.parameters()).device
        was_training = self.model.training
        self.model.eval()
        out = []
        try:
            for s in range(0, len(questions), self.batch_size):
                rows = [und_prompt(self.layout, ImageTokens(codes[k].tolist(), h, w), self.text.encode(q))
                        for k, q in zip(range(s, s + self.batch_size), questions[s: s + self.batch_size], strict=False)]
                ids, valid = left_pad(rows, self.layout.pad_id, dev)
                pos = (valid.long().cumsum(1) - 1).clamp(min=0)
                doc = torch.where(valid, torch.zeros_like(ids), torch.full_like(ids, -1))
                logits = self.model(ids, position_ids=pos, doc_ids=doc)[:, -1].float()
                out.append(logits[:, [yes_id, no_id]].softmax(-1)[:, 0].cpu())
        finally:
            self.model.train(was_training)
        return torch.cat(out)


class JudgeReward(Reward):
    """Mean probability of the expected yes/no answers to questions about each image (``judge``).

    Args:
        judge: the :class:`Judge` (default: :class:`ARMJudge` on the policy itself).
        name: label in logs and errors.
    """

    def __init__(self, judge: Judge | None = None, name: str = "judge") -> None:
        super().__init__(name=name)
        self.judge = judge if judge is not None else ARMJudge()

    def bind(self, **context: Any) -> None:
        self.judge.bind(**context)

    def compute(self, images: Any, records: Sequence[Any], codes: Tensor | None = None) -> Tensor:
        pil = as_pil(images) if not isinstance(images, Tensor) else images
        qs_per = [questions_for(r) for r in records]
        owner, qs, want_yes = [], [], []
        for b, qa in enumerate(qs_per):
            if not qa:
                raise RewardError(f"judge reward: no question could be asked about {records[b].describe()}")
            for q, a in qa:
                owner.append(b)
                qs.append(q)
                want_yes.append(a == "yes")
        idx = torch.tensor(owner)
        imgs = [pil[i] for i in owner] if not isinstance(pil, Tensor) else pil[idx]
        sub_codes = codes[idx] if codes is not None else None
        p = self.judge.p_yes(imgs, qs, sub_codes).float().cpu()
        if p.shape != (len(qs),):
            raise RewardError(f"judge {type(self.judge).__name__} returned shape {tuple(p.shape)} "
                              f"for {len(qs)} questions")
        p_expected = torch.where(torch.tensor(want_yes), p, 1.0 - p)
        total = torch.zeros(len(records)).index_add_(0, idx, p_expected)
        count = torch.zeros(len(records)).index_add_(0, idx, torch.ones(len(qs)))
        return total / count
