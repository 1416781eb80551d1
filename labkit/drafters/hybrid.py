"""Prompt lookup where the text repeats itself, a model drafter (the MTP head) everywhere else."""

from __future__ import annotations

import torch

from labkit.core.sampling import Sampler
from labkit.drafters.base import DraftContext, Drafter, Proposal
from labkit.drafters.ngram import NGramDrafter
from labkit.models.load import Target


class HybridDrafter(Drafter):
    """Proposes what followed the latest earlier match of the last ``min_match``..``n`` tokens when there is one
    (free: no model call), else asks ``fallback`` (e.g. an ``MTPDrafter``). A lookup draft is deterministic, so under
    sampling it is accepted with probability p(x) only; the fallback's sampled q can do better there.
    """

    def __init__(self, fallback: Drafter, min_match: int = 3, n: int | None = None):
        if not isinstance(min_match, int) or min_match < 1:
            raise ValueError(f"min_match: must be an integer >= 1, got {min_match!r}")
        self.lookup = NGramDrafter(n or min_match, min_n=min_match)
        self.fallback = fallback
        self.min_match = min_match
        self.name = f"hybrid(ngram>={min_match}, {fallback.name})"
        self.needs_hidden = fallback.needs_hidden
        self.vocab_size = fallback.vocab_size
        self.used: list[str] = []  # per round of the current generation: "ngram" or "fallback"
        self._last = "fallback"

    def begin(self, target: Target, prompt_ids: torch.Tensor) -> None:
        self.used = []
        self.fallback.begin(target, prompt_ids)

    def propose(self, ctx: DraftContext, k: int, sampler: Sampler) -> Proposal:
        found = self.lookup.propose(ctx, k, sampler)
        self._last = "ngram" if found.tokens.numel() else "fallback"
        self.used.append(self._last)
        return found if self._last == "ngram" else self.fallback.propose(ctx, k, sampler)

    def rollback(self, accepted: int) -> None:
        # after a lookup round the fallback drafted nothing: its cache (if any) holds committed tokens only and
        # catches up on its next call
        if self._last == "fallback":
            self.fallback.rollback(accepted)

    def kv_length(self) -> int | None:
        return self.fallback.kv_length()
