"""Where acceptance is decided: greedy exact match, and the lossless rejection rule for sampling.

Sampling (Leviathan et al. 2022; Chen et al. 2023): accept draft x_i with probability min(1, p(x_i) / q(x_i));
at the first rejection draw the replacement from norm(max(0, p - q)); if all k are accepted, draw a bonus token
from p at position k+1. The output then has exactly the target's distribution -- provided x_i was really drawn
from q, and p and q were warped (temperature, top-k, top-p) the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from labkit.core.sampling import sample


@dataclass


class Verdict:
    accepted: int  # how many drafted tokens were kept
    next_token: int  # replacement at the first rejection, or the bonus token after k accepted
    p: list[float]  # target probability of each drafted token
    q: list[float]  # drafter probability of each drafted token (1.0 for a deterministic proposal)
    u: list[float]  # the uniform draws (sampling only)
    margin: list[float]  # greedy: target's top-1 logit minus the drafted token's logit (0 = accepted)
    drafted: list[int] | None = None  # the draft as host ints, from the same transfer (None: read it separately)


def greedy_verify(draft: torch.Tensor, logits: torch.Tensor, q_tokens: torch.Tensor | None = None) -> Verdict:
    """draft [k], logits [k+1, V], q_tokens [k] (the drafter's probability of each draft; None = deterministic):
    keep the longest prefix equal to the target's argmax. One host transfer; no k x V probabilities."""
    k = draft.shape[0]
    # argmax in fp32: the same index (bf16 -> fp32 is exact), but CPU's bf16 argmax is 4x slower for one row of a
    # 262k vocabulary and ~20x for the 9 rows of a k = 8 verify (~60 ms, as much as the target forward itself)
    full = logits.float()
    best = full.argmax(dim=-1)
    if k == 0:  # plain decoding: just the argmax
        return _to_host(torch.zeros((), dtype=torch.long, device=draft.device), best[:1], draft)
    rows = torch.arange(k, device=draft.device)
    drafted_logit = full[rows, draft]
    p = torch.exp(drafted_logit - torch.logsumexp(full[:k], dim=-1))  # softmax at the drafted token only
    q = q_tokens.float() if q_tokens is not None else torch.ones_like(p)
    margin = full[rows, best[:k]] - drafted_logit  # the top-1 logit, read at the argmax (no second pass)
    accepted = (draft == best[:k]).int().cumprod(0).sum()
    return _to_host(accepted, best.index_select(0, accepted.view(1)), draft, p, q, None, margin)


def sampling_verify(
    draft: torch.Tensor,
    p_probs: torch.Tensor,
    q_probs: torch.Tensor | None,
    generator: torch.Generator,
) -> Verdict:
    """draft [k], p_probs [k+1, V] (warped target), q_probs [k, V] (warped drafter; None = deterministic).

    Decided on the device and read back in one host transfer (no sync while deciding).
    """
    k = draft.shape[0]
    if k == 0:
        none = torch.zeros((), dtype=torch.long, device=draft.device)
        return _to_host(none, sample(p_probs[0], generator), draft)
    rows = torch.arange(k, device=draft.device)
    p = p_probs[rows, draft]
    q = q_probs[rows, draft] if q_probs is not None else torch.ones_like(p)
    u = torch.rand(k, generator=generator, device=p.device)
    # u < p/q, written without dividing so q = 0 (impossible for a real draw) cannot produce NaN
    accepted = (u * q < p).int().cumprod(0).sum()
    token = sample(_next_token_distribution(draft, p_probs, q_probs, accepted), generator)
    return _to_host(accepted, token, draft, p, q, u)


def _next_token_distribution(draft: torch.Tensor, p_probs: torch.Tensor, q_probs: torch.Tensor | None,
                             accepted: torch.Tensor) -> torch.Tensor:
    """After a rejection at position n: norm(max(0, p_n - q_n)); after all k accepted: p_k (the bonus token).

    Chosen with tensor ops, so n never has to come back to the host before the draw.
    """
    k = draft.shape[0]
    n = accepted.view(1)
    p_row = p_probs.index_select(0, n)[0]
    at = n.clamp(max=k - 1)  # q's row at the rejection (any valid row when n = k: masked out below)
    if q_probs is None:  # a deterministic proposal: q is one-hot at the drafted token
        q_row = torch.nn.functional.one_hot(draft.index_select(0, at)[0], p_probs.shape[-1])
    else:
        q_row = q_probs.index_select(0, at)[0]
    residual = (p_row - q_row.to(p_probs.dtype)).clamp_min(0)
    total = residual.sum()
    # p == q cannot be rejected, but guard against round-off leaving an all-zero residual
    rejected = torch.where(total > 0, residual / total, p_row)
    return torch.where(n == k, p_row, rejected)


def _to_host(accepted: torch.Tensor, token: torch.Tensor, draft: torch.Tensor, p: torch.Tensor | None = None,
             q: torch.Tensor | None = None, u: torch.Tensor | None = None, margin: torch.Tensor | None = None
             ) -> Verdict:
    """The decision and the record's statistics in ONE device-to-host transfer (fp32 holds token ids < 2^24 and
    the fp32 statistics exactly). Statistics not computed (None) come back as empty lists."""
    stats = [p, q, u, margin]
    parts = [accepted.view(1), token.view(1), draft, *(x for x in stats if x is not None)]
    host = torch.cat([x.reshape(-1).float() for x in parts]).tolist()
    k = draft.shape[0]
    rows = iter(host[2 + k * i: 2 + k * (i + 1)] for i in range(1, 5))
    p_, q_, u_, margin_ = ([] if x is None else next(rows) for x in stats)
    return Verdict(int(host[0]), int(host[1]), p_, q_, u_, margin_, drafted=[int(t) for t in host[2: 2 + k]])


def accept_all_verify(draft: torch.Tensor, p_probs: torch.Tensor, q_probs, generator) -> Verdict:
    """A broken verifier that keeps every draft: the negative control of the lossless test."""
    k = draft.shape[0]
    v = _to_host(torch.full((), k, device=draft.device), sample(p_probs[k], generator), draft)
    return Verdict(k, v.next_token, [1.0] * k, [1.0] * k, [0.0] * k, [], v.drafted)
