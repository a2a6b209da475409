"""``vlm_judge``: a transformers vision-language model as the judge, read from its logits.

Any image-text-to-text checkpoint that ``AutoModelForImageTextToText`` and
``AutoProcessor`` load and whose processor has a chat template (Qwen2-VL, Qwen2.5-VL,
LLaVA-style, ...) judges without generating text: each question is formatted as one user
turn (its images, then the text), and the answer is read from the logits at the first
answer position (left padding puts it last in every row of a batch).

**Text-to-image items: yes/no questions.** The item's ``record["questions"]`` — a list of
``[question, "yes"|"no"]`` (DPG's propositions, GenEval clauses, ShapesWorld questions as
the RL adapter writes them) — or else one question built from ``t2i_question`` and the
prompt. ``P(yes)`` is the softmax restricted to the first tokens of the ``yes_words`` and
``no_words``, summed over each side. An image's score is the mean probability of the
expected answers, in [0, 1]; it is ``correct`` when every expected answer has p > 0.5.

**Edit items: VIEScore** (Ku et al. 2024, arXiv 2312.14867; GEdit-Bench's metric). Four
0–10 ratings, each asked as its own question: semantic consistency from the source and
the edited image (the instruction's success; the absence of over-editing) and perceptual
quality from the edited image (naturalness; absence of artifacts).
``SC = min(success, over-editing)``, ``PQ = min(naturalness, artifacts)``,
``O = sqrt(SC * PQ)``; the image's score is ``O`` (0–10), with SC and PQ in ``details``.
VIEScore parses a generated answer; here each rating is the **expected value** over the
numerals: ``sum_k k * P(k)``, ``P`` the softmax over the tokens of "0" … "10" at the answer
position. Tokenizers that write "10" as "1" then "0" (Qwen's split digits) are read in the
same forward pass: the token "1" is appended to every prompt, the logits before it give
``P(first digit)`` and the logits after it ``P("0" | "1")``, so ``P(10) = P("1")·P("0"|"1")``
and ``P(1) = P("1")·(1 - P("0"|"1"))``. Expected values are smoother than parsed
integers (they see the judge's uncertainty), so they are not the official GEdit numbers,
which GPT-4.1 or Qwen2.5-VL-72B produce by generation; state which when reporting.
``edit_scoring: questions`` scores edits by yes/no questions instead (records with
``questions``, e.g. ShapesWorld edits in RL).

Memory: the weights in ``dtype`` on ``device`` (``memory_bytes`` once loaded, logged): about
16.6 GB in bfloat16 for Qwen2-VL-7B (8.3 B parameters), 4.4 GB for Qwen2-VL-2B, 147 GB for
Qwen2.5-VL-72B (more than one 80 GB GPU: run it as its own reward server, not beside the
policy). Activations: one forward of ``batch_size`` prompts, no KV cache kept.

The model is loaded on first use and honours ``HF_HUB_OFFLINE``
(:mod:`arm_core.suites.scorers.hf_models`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from arm_core.suites.scorers.base import Scorer, ScoreRecord, ScorerError, SuiteItem
from arm_core.suites.scorers.hf_models import format_bytes, load_model_and_processor, param_bytes

__all__ = ["VIESCORE_QUESTIONS", "VLMJudgeScorer"]

log = logging.getLogger(__name__)

_RULES_EDIT = ("You are a professional digital artist judging AI-generated images. Two images are given: "
               "the first is the original, the second is an edited version of it. ")
_RULES_PQ = "You are a professional digital artist judging an AI-generated image. "
_ANSWER = " Answer with a single number from 0 to 10."

#: VIEScore's four ratings (our wording of its rules): key -> (images used, question).
VIESCORE_QUESTIONS: dict[str, tuple[str, str]] = {
    "success": ("source+edited", _RULES_EDIT + "Editing instruction: {instruction}\nRate how well the "
                "second image follows the instruction: 0 means it does not follow it at all, 10 means it "
                "follows it perfectly." + _ANSWER),
    "overediting": ("source+edited", _RULES_EDIT + "Editing instruction: {instruction}\nRate how little "
                    "was changed beyond the instruction: 0 means the edited scene is completely different "
                    "from the original, 10 means a minimal yet effective edit." + _ANSWER),
    "naturalness": ("edited", _RULES_PQ + "Rate its naturalness: 0 means it looks unnatural (wrong "
                    "distances, shadows or lighting), 10 means it looks natural." + _ANSWER),
    "artifacts": ("edited", _RULES_PQ + "Rate its freedom from artifacts: 0 means large distortions, "
                  "blur, watermarks or broken parts, 10 means no artifacts." + _ANSWER),
}


@dataclass
class _Query:
    owner: tuple[int, int]        # (item, image)
    images: list[Any]
    text: str
    key: str                      # "yn:<i>" (question i) or a VIESCORE_QUESTIONS key
    expect_yes: bool = True


class VLMJudgeScorer(Scorer):
    """A vision-language model judging images from its logits (``vlm_judge``; see the module docstring).

    Args:
        name_or_path: a local ``save_pretrained`` directory (or a cached Hub id) of an
            image-text-to-text model with a chat-template processor (e.g. Qwen2-VL).
        batch_size: prompts per forward.
        dtype: ``float32``, ``bfloat16``, ``float16`` or ``auto`` (the checkpoint's).
        device: where the judge runs (``cpu``, ``cuda:1``, ...).
        t2i_question: the question for a T2I item without ``record["questions"]``;
            ``{prompt}`` is replaced by the prompt.
        yes_words: answers counted as "yes" (their first tokens).
        no_words: answers counted as "no" (their first tokens).
        edit_scoring: ``viescore`` (0–10 SC/PQ/O) or ``questions`` (yes/no questions of the
            item's record, like T2I).
        local_files_only: never download; None = only when ``HF_HUB_OFFLINE`` is set.
        name: label in tables and errors.
    """

    metric = "vlm_judge"

    def __init__(self, name_or_path: str, batch_size: int = 8, dtype: str = "float32",
                 device: str = "cpu",
                 t2i_question: str = "Does this image show {prompt}? Answer yes or no.",
                 yes_words: list[str] | None = None, no_words: list[str] | None = None,
                 edit_scoring: str = "viescore", local_files_only: bool | None = None,
                 name: str = "vlm_judge") -> None:
        super().__init__(name=name, device=device)
        if batch_size < 1:
            raise ScorerError(f"scorer {name!r}: batch_size must be >= 1, got {batch_size}")
        if edit_scoring not in ("viescore", "questions"):
            raise ScorerError(f"scorer {name!r}: edit_scoring must be viescore or questions, got {edit_scoring!r}")
        if "{prompt}" not in t2i_question:
            raise ScorerError(f"scorer {name!r}: t2i_question must contain {{prompt}}, got {t2i_question!r}")
        self.name_or_path, self.batch_size, self.dtype = name_or_path, int(batch_size), dtype
        self.t2i_question, self.edit_scoring, self.local_files_only = t2i_question, edit_scoring, local_files_only
        self.yes_words = list(yes_words or ["yes", "Yes"])
        self.no_words = list(no_words or ["no", "No"])
        self._model: Any = None
        self._processor: Any = None

    # ------------------------------------------------------------------ loading
    def load(self) -> None:
        """Load the judge now (otherwise on the first call) and check its tokenizer."""
        if self._model is not None:
            return
        model, proc = load_model_and_processor(self.name_or_path, "AutoModelForImageTextToText", self.name,
                                               dtype=self.dtype, device=self.device,
                                               local_files_only=self.local_files_only)
        if not getattr(proc, "chat_template", None):
            raise ScorerError(f"scorer {self.name!r}: the processor of {self.name_or_path} has no chat "
                              "template, so questions cannot be put in the model's format")
        tok = proc.tokenizer
        tok.padding_side = "left"         # the answer position is the last column of every row
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        self._model, self._processor = model, proc
        self._yes, self._no = self._first_ids(self.yes_words), self._first_ids(self.no_words)
        if set(self._yes) & set(self._no):
            raise ScorerError(f"scorer {self.name!r}: the tokenizer cannot tell {self.yes_words} from "
                              f"{self.no_words} by their first tokens")
        self._numerals = self._numeral_ids()
        log.info("%s: %s on %s, weights %s", self.name, self.name_or_path, self.device,
                 format_bytes(self.memory_bytes))

    @property
    def memory_bytes(self) -> int:
        """Bytes of the loaded weights (0 before loading)."""
        return 0 if self._model is None else param_bytes(self._model)

    def _encode(self, text: str) -> list[int]:
        return list(self._processor.tokenizer.encode(text, add_special_tokens=False))

    def _first_ids(self, words: list[str]) -> list[int]:
        ids = []
        for w in words:
            e = self._encode(w)
            if not e:
                raise ScorerError(f"scorer {self.name!r}: the answer word {w!r} encodes to no token")
            ids.append(e[0])
        return sorted(set(ids))

    def _numeral_ids(self) -> dict[str, Any]:
        """Token ids of "0".."9" and how "10" is read (one token, or "1" then "0")."""
        digits = [self._encode(str(k)) for k in range(10)]
        if any(len(d) != 1 for d in digits) or len({d[0] for d in digits}) != 10:
            raise ScorerError(f"scorer {self.name!r}: the tokenizer does not write 0-9 as ten single "
                              "tokens, so 0-10 ratings cannot be read from the logits; use "
                              "edit_scoring: questions")
        ten = self._encode("10")
        ids = [d[0] for d in digits]
        if len(ten) == 1:
            return {"ids": ids + ten, "split_ten": False}
        if ten == [ids[1], ids[0]]:
            return {"ids": ids, "split_ten": True}
        raise ScorerError(f"scorer {self.name!r}: the tokenizer writes '10' as {ten}, neither one token "
                          "nor '1' then '0'; use edit_scoring: questions")

    # ------------------------------------------------------------------ the forward
    def _prompt(self, n_images: int, text: str) -> str:
        content = [{"type": "image"} for _ in range(n_images)] + [{"type": "text", "text": text}]
        return self._processor.apply_chat_template([{"role": "user", "content": content}],
                                                   add_generation_prompt=True, tokenize=False)

    @torch.no_grad()
    def _logits(self, queries: list[_Query], append: int | None) -> tuple[Tensor, Tensor | None]:
        """Logits at the answer position ``(N, V)`` and, with ``append``, after that token."""
        first, after = [], []
        dev = torch.device(self.device)
        dtype = next(self._model.parameters()).dtype
        for s in range(0, len(queries), self.batch_size):
            qs = queries[s:s + self.batch_size]
            inputs = dict(self._processor(text=[self._prompt(len(q.images), q.text) for q in qs],
                                          images=[im for q in qs for im in q.images],
                                          padding=True, return_tensors="pt"))
            if append is not None:      # left padding: a new last column is every row's next token
                n = inputs["input_ids"].shape[0]
                inputs["input_ids"] = torch.cat([inputs["input_ids"], torch.full((n, 1), append)], 1)
                for k in ("attention_mask", "mm_token_type_ids", "token_type_ids"):
                    if k in inputs:
                        fill = 1 if k == "attention_mask" else 0
                        inputs[k] = torch.cat([inputs[k], torch.full((n, 1), fill, dtype=inputs[k].dtype)], 1)
            inputs = {k: (v.to(dev, dtype) if v.is_floating_point() else v.to(dev)) if isinstance(v, Tensor)
                      else v for k, v in inputs.items()}
            logits = self._model(**inputs).logits.float()
            if append is None:
                first.append(logits[:, -1].cpu())
            else:
                first.append(logits[:, -2].cpu())
                after.append(logits[:, -1].cpu())
        return torch.cat(first), (torch.cat(after) if after else None)

    def p_yes(self, queries: list[_Query]) -> Tensor:
        """``(N,)`` P(yes) among the yes/no answer tokens."""
        logits, _ = self._logits(queries, None)
        lp = logits[:, self._yes + self._no].log_softmax(-1)
        return lp[:, :len(self._yes)].logsumexp(-1).exp()

    def expected_rating(self, queries: list[_Query]) -> Tensor:
        """``(N,)`` expected 0–10 rating (see the module docstring)."""
        num = self._numerals
        if not num["split_ten"]:
            logits, _ = self._logits(queries, None)
            p = logits[:, num["ids"]].softmax(-1)
        else:
            ids = num["ids"]
            logits, after = self._logits(queries, ids[1])
            p10 = logits[:, ids].softmax(-1)                             # P(first digit)
            p_zero = after[:, [ids[0]] + self._stop_ids()].softmax(-1)[:, 0]  # P("0" | "1") vs ending
            p = torch.cat([p10[:, :1], (p10[:, 1] * (1 - p_zero))[:, None], p10[:, 2:],
                           (p10[:, 1] * p_zero)[:, None]], 1)
        return (p * torch.arange(11, dtype=p.dtype)).sum(-1)

    def _stop_ids(self) -> list[int]:
        """Tokens that end the answer after "1" (end of turn / sequence)."""
        tok = self._processor.tokenizer
        gen = getattr(self._model, "generation_config", None)
        ids = {t for t in (tok.eos_token_id, getattr(gen, "eos_token_id", None)) if t is not None}
        flat = set()
        for t in ids:
            flat.update(t if isinstance(t, (list, tuple)) else [t])
        if not flat:
            raise ScorerError(f"scorer {self.name!r}: the tokenizer has no end-of-sequence token to read "
                              "'1' vs '10' against")
        return sorted(flat)

    # ------------------------------------------------------------------ scoring
    def _questions(self, item: SuiteItem) -> list[tuple[str, bool]]:
        raw = item.record.get("questions")
        if not raw:
            return [(self.t2i_question.format(prompt=item.prompt), True)]
        out = []
        for i, qa in enumerate(raw):
            if (not isinstance(qa, (list, tuple)) or len(qa) != 2 or not isinstance(qa[0], str)
                    or str(qa[1]).lower() not in ("yes", "no")):
                raise ScorerError(f"scorer {self.name!r}, {item.suite} item {item.item_id!r}: questions[{i}] "
                                  f"must be [question, 'yes'|'no'], got {qa!r}")
            out.append((qa[0], str(qa[1]).lower() == "yes"))
        return out

    def score(self, items: Sequence[SuiteItem]) -> list[ScoreRecord]:
        self.load()
        yes_no: list[_Query] = []
        ratings: list[_Query] = []
        for k, it in enumerate(items):
            source = it.load_source()
            viescore = source is not None and self.edit_scoring == "viescore"
            for j, im in enumerate(it.load_images()):
                if viescore:
                    for key, (which, text) in VIESCORE_QUESTIONS.items():
                        ims = [source, im] if which == "source+edited" else [im]
                        ratings.append(_Query((k, j), ims, text.format(instruction=it.prompt), key))
                else:
                    for i, (q, want) in enumerate(self._questions(it)):
                        yes_no.append(_Query((k, j), [im], q, f"yn:{i}", want))
        p = self.p_yes(yes_no).tolist() if yes_no else []
        r = self.expected_rating(ratings).tolist() if ratings else []
        per: dict[tuple[int, int], dict[str, Any]] = {}
        for q, v in zip(yes_no, p, strict=True):
            d = per.setdefault(q.owner, {"questions": []})
            d["questions"].append({"question": q.text, "expected": "yes" if q.expect_yes else "no", "p_yes": v})
        for q, v in zip(ratings, r, strict=True):
            per.setdefault(q.owner, {})[q.key] = v
        out = []
        for k, it in enumerate(items):
            rec = ScoreRecord(it.item_id, it.tag, [], correct=[], details=[])
            for j in range(len(it.images)):
                d = per[(k, j)]
                if "questions" in d:
                    right = [x["p_yes"] if x["expected"] == "yes" else 1 - x["p_yes"] for x in d["questions"]]
                    rec.scores.append(sum(right) / len(right))
                    rec.correct.append(all(v > 0.5 for v in right))
                else:
                    sc, pq = min(d["success"], d["overediting"]), min(d["naturalness"], d["artifacts"])
                    d.update(SC=sc, PQ=pq, O=math.sqrt(max(sc, 0.0) * max(pq, 0.0)))
                    rec.scores.append(d["O"])
                rec.details.append(d)
            if any("questions" not in d for d in rec.details):
                rec.correct = None      # VIEScore has no yes/no verdict
            out.append(rec)
        return out
