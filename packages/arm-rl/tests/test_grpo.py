"""The GRPO loss and its gradient against a direct, loop-by-loop implementation of the formulas."""

from __future__ import annotations

import math

import pytest
import torch
from arm_rl.grpo import (
    check_aggregation,
    default_normalize_std,
    group_advantages,
    group_std,
    grpo_loss,
    k3_kl,
    zero_variance_groups,
)


def _reference(logp, old, adv, mask, ref, beta, eps_low, eps_high, aggregation, max_len):
    """Plain Python loops over sequences and tokens, scalar torch ops only."""
    B, T = len(logp), len(logp[0])
    per_seq_sums, per_seq_counts = [], []
    total = logp[0][0] * 0.0
    count = 0
    for i in range(B):
        s = logp[0][0] * 0.0
        c = 0
        for t in range(T):
            if not mask[i][t]:
                continue
            ratio = torch.exp(logp[i][t] - old[i][t])
            clipped = min(max(ratio, torch.tensor(1 - eps_low)), torch.tensor(1 + eps_high))
            term = -min(ratio * adv[i], clipped * adv[i])
            if beta > 0:
                d = ref[i][t] - logp[i][t]
                term = term + beta * (torch.exp(d) - d - 1)
            s = s + term
            c += 1
        per_seq_sums.append(s)
        per_seq_counts.append(c)
        total = total + s
        count += c
    if aggregation == "grpo":
        return sum(s / max(c, 1) for s, c in zip(per_seq_sums, per_seq_counts, strict=True)) / B
    if aggregation == "dr_grpo":
        return total / (B * max_len)
    return total / count


@pytest.mark.parametrize("aggregation", ["grpo", "dr_grpo", "token", "dapo"])
@pytest.mark.parametrize("beta", [0.0, 0.05])
def test_loss_and_gradient_match_direct_formula(aggregation, beta):
    g = torch.Generator().manual_seed(0)
    B, T = 4, 6
    base = torch.randn(B, T, generator=g) * 0.3 - 2.0
    old = base + torch.randn(B, T, generator=g) * 0.4   # ratios well outside [0.8, 1.2] too
    ref = base + torch.randn(B, T, generator=g) * 0.2
    adv = torch.tensor([1.3, -0.7, 0.4, -1.0])
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[0, 4:] = False
    mask[2, :2] = False
    mask[3, 1] = False
    eps_low, eps_high, max_len = 0.2, 0.28, 8

    logp = base.clone().requires_grad_(True)
    out = grpo_loss(logp, old, adv, mask, ref_logp=ref, beta=beta, eps_low=eps_low,
                    eps_high=eps_high, aggregation=aggregation, max_len=max_len)
    out.loss.backward()

    leaves = [[base[i, t].clone().requires_grad_(True) for t in range(T)] for i in range(B)]
    expect = _reference(leaves, old.tolist(), adv.tolist(), mask.tolist(), ref.tolist(), beta,
                        eps_low, eps_high, check_aggregation(aggregation), max_len)
    expect.backward()
    expect_grad = torch.tensor([[0.0 if leaves[i][t].grad is None else float(leaves[i][t].grad)
                                 for t in range(T)] for i in range(B)])
    assert math.isclose(out.loss.item(), expect.item(), rel_tol=1e-5, abs_tol=1e-6)
    torch.testing.assert_close(logp.grad, expect_grad, rtol=1e-4, atol=1e-6)
    assert (logp.grad[~mask] == 0).all()            # prompt / non-visual tokens get no gradient
    assert 0.0 < out.clip_fraction.item() < 1.0     # the fixture exercises both branches
    assert out.n_tokens.item() == mask.sum().item()


def test_aggregations_differ_and_reduce_to_each_other_when_equal_lengths():
    logp = torch.randn(3, 5) - 1
    old = logp + 0.1 * torch.randn(3, 5)
    adv = torch.tensor([1.0, -0.5, 0.2])
    full = torch.ones(3, 5, dtype=torch.bool)
    a = grpo_loss(logp, old, adv, full, beta=0.0, aggregation="grpo").loss
    b = grpo_loss(logp, old, adv, full, beta=0.0, aggregation="token").loss
    c = grpo_loss(logp, old, adv, full, beta=0.0, aggregation="dr_grpo").loss
    torch.testing.assert_close(a, b)      # equal lengths: per-sequence mean == token mean
    torch.testing.assert_close(a, c)      # and max_len defaults to T
    ragged = full.clone()
    ragged[0, 2:] = False
    a = grpo_loss(logp, old, adv, ragged, beta=0.0, aggregation="grpo").loss
    b = grpo_loss(logp, old, adv, ragged, beta=0.0, aggregation="token").loss
    assert not torch.isclose(a, b)


def test_on_policy_loss_gradient_is_policy_gradient():
    # ratio == 1, beta = 0: d loss / d logp_t = -A_i / (n_i * B) (GRPO aggregation)
    logp = (torch.randn(2, 3) - 1).requires_grad_(True)
    adv = torch.tensor([2.0, -1.0])
    out = grpo_loss(logp, logp.detach(), adv, torch.ones(2, 3, dtype=torch.bool), beta=0.0)
    out.loss.backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[-1 / 3] * 3, [1 / 6] * 3]))
    assert out.clip_fraction.item() == 0.0 and out.kl.item() == 0.0


def test_group_advantages():
    r = torch.tensor([1.0, 0.0, 0.5, 0.5, 0.2, 0.4])
    a = group_advantages(r, 2, normalize_std=False)
    torch.testing.assert_close(a, torch.tensor([0.5, -0.5, 0.0, 0.0, -0.1, 0.1]))
    a = group_advantages(r, 2, normalize_std=True, eps=0.0)
    s = torch.tensor([1.0, 0.0]).std()
    torch.testing.assert_close(a[:2], torch.tensor([0.5, -0.5]) / s)
    assert a[2:4].abs().max() == 0                       # zero-variance group stays finite, zero
    assert zero_variance_groups(r, 2).tolist() == [False, True, False]
    # within-group std: prompt-fixed values have a batch std but no group std
    fixed = torch.tensor([0.0, 0.0, 1.0, 1.0])
    assert fixed.std() > 0.5 and group_std(fixed, 2) == 0
    stds = [torch.tensor(g).std() for g in ([1.0, 0.0], [0.5, 0.5], [0.2, 0.4])]
    torch.testing.assert_close(group_std(r, 2), torch.stack(stds).mean())
    with pytest.raises(ValueError, match="groups of 4"):
        group_advantages(r, 4)
    with pytest.raises(ValueError, match=">= 2"):
        group_advantages(r, 1)


def test_k3_and_bad_arguments():
    lp = torch.tensor([-1.0, -2.0])
    assert torch.allclose(k3_kl(lp, lp), torch.zeros(2))
    assert (k3_kl(lp, lp + torch.tensor([0.5, -0.5])) > 0).all()
    with pytest.raises(ValueError, match="choose one of"):
        check_aggregation("mean")
    with pytest.raises(ValueError, match="ref_logp"):
        grpo_loss(lp[None], lp[None], torch.ones(1), torch.ones(1, 2, dtype=torch.bool), beta=0.1)
    assert default_normalize_std("grpo") and not default_normalize_std("dr_grpo")


def test_token_outside_top_k_has_ratio_zero_and_the_kl_uses_untruncated_logprobs():
    # The current policy's truncated sampler can no longer draw token (0, 1): log-prob -inf.
    base = torch.tensor([[-1.0, -2.0, -1.5], [-0.5, -1.0, -2.0]])
    logp = base.clone().requires_grad_(True)
    truncated = torch.where(torch.tensor([[False, True, False], [False, False, False]]),
                            torch.tensor(float("-inf")), logp)
    old = torch.full((2, 3), -1.2)
    ref = torch.full((2, 3), -1.1)
    mask = torch.ones(2, 3, dtype=torch.bool)
    adv = torch.tensor([1.0, -1.0])
    naive = grpo_loss(truncated, old, adv, mask, ref_logp=ref, beta=0.1)
    assert not torch.isfinite(naive.loss)                       # k3 on -inf: why kl_logp exists
    out = grpo_loss(truncated, old, adv, mask, ref_logp=ref, beta=0.1, kl_logp=logp)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert torch.isfinite(logp.grad).all()
    # the KL term is exactly k3 on the untruncated log-probs
    torch.testing.assert_close(out.kl, k3_kl(logp.detach(), ref).mean())
