"""A separate (smaller) causal LM with the target's vocabulary and its own KV cache."""

from __future__ import annotations

from typing import Any

import torch

from labkit.core.kvcache import cache_len, crop, new_cache
from labkit.core.sampling import Sampler
from labkit.drafters.base import DraftContext, Drafter, DraftSteps, Proposal, empty_proposal
from labkit.models.load import Target, as_target


class DraftModelDrafter(Drafter):
    """Drafts k tokens autoregressively with ``model``; after verification, crops its cache to what was kept."""

    def __init__(self, model: Any | None, name: str | None = None):
        # model None: a subclass builds its draft model from the target in begin() (early exit, synthetic)
        self.draft = as_target(model) if model is not None else None
        self.vocab_size = self.draft.vocab_size if self.draft is not None else None
        self.name = name or f"draft-model({self.draft.name})"
        self.cache = None
        self._start = 0  # committed length when the last proposal started

    def begin(self, target: Target, prompt_ids: torch.Tensor) -> None:
        self.cache = new_cache(self.draft.model)
        if prompt_ids.numel() > 1:
            self.draft.model(input_ids=prompt_ids[None, :-1], cache=self.cache, use_cache=True,
                             logits_to_keep=1)

    def propose(self, ctx: DraftContext, k: int, sampler: Sampler) -> Proposal:
        self._start = ctx.ids.numel()
        # Feed what the cache lacks: the pending token, plus the last draft after a full acceptance.
        x = ctx.ids[cache_len(self.cache):]
        steps = DraftSteps(sampler)
        for _ in range(k):
            tok, q = self.pick(self._step(x), sampler, ctx)
            if steps.add(tok, q):
                break
            x = tok
        return steps.proposal() if steps.tokens else empty_proposal(ctx.ids.device)

    def pick(self, logits: torch.Tensor, sampler: Sampler, ctx: DraftContext) -> tuple[torch.Tensor, torch.Tensor]:
        """Choose the next draft token and report the distribution it was drawn from."""
        return sampler.pick(logits)

    def _step(self, x: torch.Tensor) -> torch.Tensor:
        return self.draft.model(input_ids=x[None], cache=self.cache, use_cache=True,
                                logits_to_keep=1).logits[0, -1]

    def rollback(self, accepted: int) -> None:
        # cache = [committed[:-1], pending, x1 .. x_{k-1}]: x_i stays while i <= accepted, rejected ones go.
        # After a full acceptance x_k was never fed: the next propose feeds it with the bonus token in one
        # forward, so the cache may trail the target's by that one token (never holds a rejected one).
        crop(self.cache, min(cache_len(self.cache), self._start + accepted))

    def kv_length(self) -> int | None:
        return None if self.cache is None else cache_len(self.cache)
