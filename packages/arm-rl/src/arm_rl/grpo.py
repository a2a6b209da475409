"""The GRPO-family policy loss: group-relative advantages, clipped ratios, k3 KL, aggregation.

GRPO (Shao et al., DeepSeekMath, arXiv 2402.03300) samples ``G`` completions per prompt and
uses the reward's deviation from its group mean as the advantage (no value network)::

    A_i = r_i - mean_g(r)                (optionally / (std_g(r) + eps))

Per token ``t`` of completion ``i`` (only the tokens the mask selects — for ARM, the visual
tokens of each rollout)::

    ratio  = exp(logp - old_logp)
    surr   = min(ratio * A_i, clip(ratio, 1 - eps_low, 1 + eps_high) * A_i)
    k3     = exp(ref_logp - logp) - (ref_logp - logp) - 1          (Schulman's k3 KL estimator)
    l_t    = -surr + beta * k3

Separate low/high clip ranges follow DAPO's "clip-higher" (Yu et al., arXiv 2503.14476).
The per-token losses are aggregated one of three ways (:data:`AGGREGATIONS`):

- ``grpo``: mean over each sequence's tokens, then mean over sequences (the original GRPO);
- ``dr_grpo``: sum over all tokens / (number of sequences * a constant ``max_len``) — Dr. GRPO
  (Liu et al., "Understanding R1-Zero-Like Training", arXiv 2503.20783) removes the length
  normalisation bias; it also drops the std normalisation of advantages, which is why
  :func:`default_normalize_std` returns False for it;
- ``token`` (alias ``dapo``): sum over all tokens / total number of tokens (DAPO's token-level
  loss).

``beta = 0`` removes the KL term entirely (``ref_logp`` may then be None, and the trainer does
not build a reference model at all).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["AGGREGATIONS", "GRPOLossOutput", "group_advantages", "k3_kl", "grpo_loss",
           "check_aggregation", "default_normalize_std", "zero_variance_groups", "group_std"]

AGGREGATIONS: tuple[str, ...] = ("grpo", "dr_grpo", "token")
_ALIASES = {"dapo": "token", "seq_mean": "grpo", "drgrpo": "dr_grpo", "dr-grpo": "dr_grpo"}


def check_aggregation(name: str) -> str:
    """Canonical aggregation name (``dapo`` -> ``token``); unknown names list the choices."""
    key = _ALIASES.get(name, name)
    if key not in AGGREGATIONS:
        raise ValueError(f"unknown loss aggregation {name!r}; choose one of {list(AGGREGATIONS)} "
                         f"(aliases: {sorted(_ALIASES)})")
    return key


def default_normalize_std(aggregation: str) -> bool:
    """GRPO/DAPO divide advantages by the group std; Dr. GRPO does not."""
    return check_aggregation(aggregation) != "dr_grpo"


def group_advantages(rewards: Tensor, group_size: int, normalize_std: bool = True,
                     eps: float = 1e-4) -> Tensor:
    """Group-relative advantages.

    Args:
        rewards: ``(P * G,)`` rewards, the ``G`` samples of each prompt consecutive.
        group_size: ``G`` (>= 2: a group of one has no baseline).
        normalize_std: divide by the group's (unbiased) standard deviation + ``eps``.
        eps: keeps zero-variance groups finite (their advantages are 0 anyway).

    Returns:
        ``(P * G,)`` advantages (float32).
    """
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be 1-D (P*G,), got shape {tuple(rewards.shape)}")
    if group_size < 2:
        raise ValueError(f"group_size must be >= 2 (a group needs a baseline), got {group_size}")
    if rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    r = rewards.float().view(-1, group_size)
    adv = r - r.mean(dim=1, keepdim=True)
    if normalize_std:
        denom = r.std(dim=1, keepdim=True) + eps
        # a zero-variance group has zero advantages; keep them 0 even with eps = 0
        adv = torch.where(denom > 0, adv / denom.clamp(min=1e-12), torch.zeros_like(adv))
    return adv.reshape(-1)


def zero_variance_groups(rewards: Tensor, group_size: int, tol: float = 0.0) -> Tensor:
    """``(P,)`` bool: True for groups whose rewards are all equal (within ``tol``) — they
    carry no learning signal (DAPO's dynamic sampling drops them)."""
    r = rewards.float().view(-1, group_size)
    return (r.max(dim=1).values - r.min(dim=1).values) <= tol


def group_std(values: Tensor, group_size: int) -> Tensor:
    """Mean within-group standard deviation of ``(P * G,)`` values (a scalar).

    GRPO learns only from differences inside a group, so this (not the batch std, which
    mixes easy and hard prompts) is the signal a reward or reward part gives the policy:
    a part whose value is fixed by the prompt has a batch std but no group std.
    """
    return values.float().view(-1, group_size).std(dim=1).mean()


def k3_kl(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """Per-token k3 estimator of KL(policy || ref): ``exp(d) - d - 1`` with ``d = ref - logp``
    (unbiased, always >= 0; http://joschu.net/blog/kl-approx.html)."""
    d = ref_logp - logp
    return torch.exp(d) - d - 1.0


@dataclass
class GRPOLossOutput:
    """:func:`grpo_loss` result; every statistic is a detached scalar over the masked tokens.

    Attributes:
        loss: the scalar to backpropagate.
        policy_loss: the clipped-surrogate part (aggregated like ``loss``).
        kl: mean k3 KL per token (0 when ``beta == 0`` and no reference is given).
        clip_fraction: fraction of tokens whose ratio was clipped (the clipped branch is
            active, so they get no policy gradient).
        ratio_mean: mean importance ratio.
        n_tokens: number of tokens in the loss.
    """

    loss: Tensor
    policy_loss: Tensor
    kl: Tensor
    clip_fraction: Tensor
    ratio_mean: Tensor
    n_tokens: Tensor


def _aggregate(per_token: Tensor, mask: Tensor, aggregation: str, max_len: int | None) -> Tensor:
    m = mask.to(per_token.dtype)
    if aggregation == "grpo":
        per_seq = (per_token * m).sum(1) / m.sum(1).clamp(min=1.0)
        return per_seq.mean()
    if aggregation == "dr_grpo":
        L = max_len if max_len is not None else per_token.shape[1]
        return (per_token * m).sum() / (per_token.shape[0] * L)
    return (per_token * m).sum() / m.sum().clamp(min=1.0)


def grpo_loss(logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, *,
              ref_logp: Tensor | None = None, beta: float = 0.01, eps_low: float = 0.2,
              eps_high: float = 0.2, aggregation: str = "grpo",
              max_len: int | None = None, kl_logp: Tensor | None = None) -> GRPOLossOutput:
    """The clipped GRPO objective with a k3 KL penalty (see the module docstring).

    Args:
        logp: ``(B, T)`` log-probs of the sampled tokens under the current policy (grad).
        old_logp: ``(B, T)`` log-probs under the policy that sampled them (no grad needed).
        advantages: ``(B,)`` one advantage per sequence.
        mask: ``(B, T)`` bool, True on tokens that enter the loss (the visual tokens).
        ref_logp: ``(B, T)`` log-probs under the frozen reference; required when ``beta > 0``.
        beta: KL coefficient (ARM: 0.01); 0 = no KL term.
        eps_low: lower clip range: ratios below ``1 - eps_low`` are clipped (ARM: 0.2).
        eps_high: upper clip range: ratios above ``1 + eps_high`` are clipped (ARM: 0.2).
        aggregation: ``grpo`` | ``dr_grpo`` | ``token`` (alias ``dapo``).
        max_len: Dr. GRPO's constant length (default: ``T``).
        kl_logp: ``(B, T)`` the current policy's log-probs for the KL term, under the same
            distribution as ``ref_logp`` (default: ``logp``). With top-k sampling the trainer
            passes untruncated log-probs here and in ``ref_logp``: a token outside the
            current top-k has ``logp = -inf`` (ratio 0, harmless) but an infinite k3.
    """
    aggregation = check_aggregation(aggregation)
    if logp.shape != old_logp.shape or logp.shape != mask.shape:
        raise ValueError(f"logp {tuple(logp.shape)}, old_logp {tuple(old_logp.shape)} and mask "
                         f"{tuple(mask.shape)} must have the same (B, T) shape")
    if advantages.shape != (logp.shape[0],):
        raise ValueError(f"advantages must be ({logp.shape[0]},), got {tuple(advantages.shape)}")
    if beta < 0 or eps_low < 0 or eps_high < 0:
        raise ValueError(f"beta, eps_low and eps_high must be >= 0, got {beta}, {eps_low}, {eps_high}")
    if beta > 0 and ref_logp is None:
        raise ValueError("beta > 0 needs ref_logp (the frozen reference's log-probs); pass "
                         "beta=0 to train without a reference")
    mask = mask.bool()
    logp = logp.float()
    # Masked-out positions (prompt, padding) may hold anything; zero them so exp() stays finite.
    zeros = torch.zeros_like(logp)
    logp = torch.where(mask, logp, zeros)
    old = torch.where(mask, old_logp.float().detach(), zeros)
    adv = advantages.float().detach()[:, None]
    ratio = torch.exp(logp - old)
    clipped = ratio.clamp(1.0 - eps_low, 1.0 + eps_high)
    unclipped_obj, clipped_obj = ratio * adv, clipped * adv
    surrogate = torch.minimum(unclipped_obj, clipped_obj)
    per_token = -surrogate
    kl_tok = zeros
    if ref_logp is not None:
        ref = torch.where(mask, ref_logp.float().detach(), zeros)
        pol = logp if kl_logp is None else torch.where(mask, kl_logp.float(), zeros)
        kl_tok = k3_kl(pol, ref)
        if beta > 0:
            per_token = per_token + beta * kl_tok
    loss = _aggregate(per_token, mask, aggregation, max_len)
    with torch.no_grad():
        m = mask.float()
        n = m.sum().clamp(min=1.0)
        policy_loss = _aggregate(-surrogate, mask, aggregation, max_len)
        clip_frac = ((clipped_obj < unclipped_obj).float() * m).sum() / n
        stats = dict(policy_loss=policy_loss, kl=(kl_tok * m).sum() / n, clip_fraction=clip_frac,
                     ratio_mean=(ratio * m).sum() / n, n_tokens=m.sum())
    return GRPOLossOutput(loss=loss, **{k: v.detach() for k, v in stats.items()})
