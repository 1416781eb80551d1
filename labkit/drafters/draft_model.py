"""A separate (smaller) causal LM with the target's vocabulary and its own KV cache."""

from __future__ import annotations

from typing import Any

import torch

from ..kvcache import cache_len, crop, new_cache
from ..models import Target, as_target
from ..sampling import Sampler
from .base import DraftContext, Drafter, Proposal, empty_proposal


class DraftModelDrafter(Drafter):
    """Drafts k tokens autoregressively with ``model``; after verification, crops its cache to what was kept."""

    def __init__(self, model: Any, name: str | None = None):
        self.draft = as_target(model)
        self.vocab_size = self.draft.vocab_size
        self.name = name or f"draft-model({self.draft.name})"
        self.cache = None
        self._start = 0  # committed length when the last proposal started
        self._seq = None  # committed ids + last drafts, to catch up after a full acceptance

    def begin(self, target: Target, prompt_ids: torch.Tensor) -> None:
        self.cache = new_cache(self.draft.model)
        if prompt_ids.numel() > 1:
            self.draft.model(input_ids=prompt_ids[None, :-1], past_key_values=self.cache, use_cache=True,
                             logits_to_keep=1)

    def propose(self, ctx: DraftContext, k: int, sampler: Sampler) -> Proposal:
        self._start = ctx.ids.numel()
        x = ctx.ids[cache_len(self.cache):]  # the pending token: the cache holds everything before it
        tokens, probs = [], []
        for _ in range(k):
            tok, q = self.pick(self._step(x), sampler, ctx)
            tokens.append(tok)
            probs.append(q)
            x = tok
        if not tokens:
            self._seq = ctx.ids
            return empty_proposal(ctx.ids.device)
        drafted = torch.cat(tokens)
        self._seq = torch.cat([ctx.ids, drafted])
        return Proposal(drafted, torch.stack(probs))

    def pick(self, logits: torch.Tensor, sampler: Sampler, ctx: DraftContext) -> tuple[torch.Tensor, torch.Tensor]:
        """Choose the next draft token and report the distribution it was drawn from."""
        return sampler.pick(logits)

    def _step(self, x: torch.Tensor) -> torch.Tensor:
        return self.draft.model(input_ids=x[None], past_key_values=self.cache, use_cache=True,
                                logits_to_keep=1).logits[0, -1]

    def rollback(self, accepted: int) -> None:
        # cache = [committed[:-1], pending, x1 .. x_{k-1}]; keep it equal to the target's: committed[:-1] + kept.
        keep = self._start + accepted
        n = cache_len(self.cache)
        if n < keep:  # everything was accepted: x_k was never fed (gpt-fast does the same catch-up)
            self._step(self._seq[n:keep])
        crop(self.cache, keep)

    def kv_length(self) -> int | None:
        return None if self.cache is None else cache_len(self.cache)
