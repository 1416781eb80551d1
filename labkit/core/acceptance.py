"""Where acceptance is decided: greedy exact match, and the lossless rejection rule for sampling.

Sampling (Leviathan et al. 2022; Chen et al. 2023): accept draft x_i with probability min(1, p(x_i) / q(x_i));
at the first rejection draw the replacement from norm(max(0, p - q)); if all k are accepted, draw a bonus token
from p at position k+1. The output then has exactly the target's distribution -- provided x_i was really drawn
from q, and p and q were warped (temperature, top-k, top-p) the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass


class Verdict:
    accepted: int  # how many drafted tokens were kept
    next_token: int  # replacement at the first rejection, or the bonus token after k accepted
    p: list[float]  # target probability of each drafted token
    q: list[float]  # drafter probability of each drafted token (1.0 for a deterministic proposal)
    u: list[float]  # the uniform draws (sampling only)
    margin: list[float]  # greedy: target's top-1 logit minus the drafted token's logit (0 = accepted)


def greedy_verify(draft: torch.Tensor, logits: torch.Tensor, q_probs: torch.Tensor | None) -> Verdict:
    """draft [k], logits [k+1, V]: keep the longest prefix equal to the target's argmax."""
    k = draft.shape[0]
    # argmax in fp32: the same index (bf16 -> fp32 is exact), but CPU's bf16 argmax is 4x slower for one row of a
    # 262k vocabulary and ~20x for the 9 rows of a k = 8 verify (~60 ms, as much as the target forward itself)
    full = logits.float()
    best = full.argmax(dim=-1)
    if k == 0:
        return Verdict(0, int(best[0]), [], [], [], [])
    rows = torch.arange(k, device=draft.device)
    lf = full[:k]
    drafted_logit = lf[rows, draft]
    p = torch.softmax(lf, dim=-1)[rows, draft]
    q = q_probs[rows, draft] if q_probs is not None else torch.ones_like(p)
    margin = lf[rows, best[:k]] - drafted_logit  # the top-1 logit, read at the argmax (no second pass)
    # One host transfer for the decision and the record (fp64 holds token ids and fp32 values exactly).
    host = torch.cat([draft.double(), best.double(), p.double(), q.double(), margin.double()]).tolist()
    d, b = host[:k], host[k: 2 * k + 1]
    n = next((i for i in range(k) if d[i] != b[i]), k)
    stats = host[2 * k + 1:]
    return Verdict(n, int(b[n]), stats[:k], stats[k: 2 * k], [], stats[2 * k:])


def sampling_verify(
    draft: torch.Tensor,
    p_probs: torch.Tensor,
    q_probs: torch.Tensor | None,
    generator: torch.Generator,
) -> Verdict:
    """draft [k], p_probs [k+1, V] (warped target), q_probs [k, V] (warped drafter; None = deterministic)."""
    k = draft.shape[0]
    if k == 0:
        tok = torch.multinomial(p_probs[0], 1, generator=generator)
        return Verdict(0, int(tok), [], [], [], [])
    rows = torch.arange(k, device=draft.device)
    p = p_probs[rows, draft]
    q = q_probs[rows, draft] if q_probs is not None else torch.ones_like(p)
    u = torch.rand(k, generator=generator, device=p.device)
    # u < p/q, written without dividing so q = 0 (impossible for a real draw) cannot produce NaN
    keep = (u * q < p).int()
    n = int(keep.cumprod(0).sum())
    if n == k:
        tok = torch.multinomial(p_probs[k], 1, generator=generator)
    else:
        q_row = q_probs[n] if q_probs is not None else torch.nn.functional.one_hot(draft[n], p_probs.shape[-1])
        residual = (p_probs[n] - q_row.to(p_probs.dtype)).clamp_min(0)
        total = residual.sum()
        # p == q cannot be rejected, but guard against round-off leaving an all-zero residual
        tok = torch.multinomial(residual / total if total > 0 else p_probs[n], 1, generator=generator)
    stats = torch.stack([p.float(), q.float(), u.float()]).tolist()
    return Verdict(n, int(tok), stats[0], stats[1], stats[2], [])


def accept_all_verify(draft: torch.Tensor, p_probs: torch.Tensor, q_probs, generator) -> Verdict:
    """A broken verifier that keeps every draft: the negative control of the lossless test."""
    k = draft.shape[0]
    tok = torch.multinomial(p_probs[k], 1, generator=generator)
    return Verdict(k, int(tok), [1.0] * k, [1.0] * k, [0.0] * k, [])
