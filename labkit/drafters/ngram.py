"""Prompt lookup: find the latest earlier occurrence of the last n tokens and propose what followed it."""

from __future__ import annotations

import torch

from labkit.core.sampling import Sampler
from labkit.drafters.base import DraftContext, Drafter, Proposal, empty_proposal


class NGramDrafter(Drafter):
    """Tries n, n-1, ..., min_n; deterministic (q is one-hot), costs no model call. Proposes nothing without a match."""

    def __init__(self, n: int = 3, min_n: int = 1):
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n: must be an integer >= 1, got {n!r}")
        if not isinstance(min_n, int) or not 1 <= min_n <= n:
            raise ValueError(f"min_n: must be an integer in 1..n ({n}), got {min_n!r}")
        self.n, self.min_n = n, min_n
        self.name = f"ngram(n={n})"

    def propose(self, ctx: DraftContext, k: int, sampler: Sampler) -> Proposal:
        # lookup is cheap integer work; do it on the host, from the engine's host copy when there is one
        ids = torch.tensor(ctx.tokens) if ctx.tokens is not None else ctx.ids.cpu()
        L = ids.numel()
        for n in range(min(self.n, L - 1), self.min_n - 1, -1):
            tail = ids[L - n:]
            windows = ids[: L - 1].unfold(0, n, 1)  # every n-gram that has at least one token after it
            hits = (windows == tail).all(dim=1).nonzero()
            if hits.numel():
                start = int(hits[-1]) + n
                follow = ids[start: start + k]
                return Proposal(follow.to(ctx.ids.device), None)
        return empty_proposal(ctx.ids.device)
