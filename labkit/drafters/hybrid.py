"""Prompt lookup where the text repeats itself, a model drafter (the MTP head) everywhere else.

Each source can draft its own length (issue 17): lookup drafts cost nothing and are long when the text repeats,
the MTP head's are short because every step costs a head forward and its acceptance falls with position. With
``lookup_k`` / ``model_k`` = "auto" a cost model per source (``labkit.core.draft_length.CostModel``, fed the machine's
measured verify cost and that source's own acceptance) picks the length each round; each round's record says which
source drafted and why (``RoundRecord.draft_reason``).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch

from labkit.core.draft_length import CostModel
from labkit.core.sampling import Sampler
from labkit.core.verify_cost import VerifyCost
from labkit.drafters.base import DraftContext, Drafter, Proposal
from labkit.drafters.ngram import NGramDrafter
from labkit.models.load import Target

MODEL_DRAFT_COST = 0.05  # c of the shipped MTP head here, in one-token target forwards (MODEL_CARD: 0.033-0.056)


class HybridDrafter(Drafter):
    """Proposes what followed the latest earlier match of the last ``min_match``..``n`` tokens when there is one
    (free: no model call), else asks ``fallback`` (e.g. an ``MTPDrafter``). A lookup draft is deterministic, so under
    sampling it is accepted with probability p(x) only; the fallback's sampled q can do better there.

    ``lookup_k`` / ``model_k``: each source's own draft length, at most the round's k (None: the round's k, as
    before; an int: that many; "auto": that source's cost model, up to ``k_max`` with ``verify_cost``).
    """

    def __init__(self, fallback: Drafter, min_match: int = 3, n: int | None = None,
                 lookup_k: int | str | None = None, model_k: int | str | None = None, k_max: int = 16,
                 verify_cost: VerifyCost | dict[int, float] | None = None,
                 model_draft_cost: float = MODEL_DRAFT_COST):
        if not isinstance(min_match, int) or min_match < 1:
            raise ValueError(f"min_match: must be an integer >= 1, got {min_match!r}")
        self.lookup = NGramDrafter(n or min_match, min_n=min_match)
        self.fallback = fallback
        self.min_match = min_match
        self.lengths = {"ngram": _length("lookup_k", lookup_k, k_max, verify_cost, 0.0),
                        "fallback": _length("model_k", model_k, min(k_max, 8), verify_cost, model_draft_cost)}
        split = "" if lookup_k is None and model_k is None else f", lookup k {lookup_k}, model k {model_k}"
        self.name = f"hybrid(ngram>={min_match}, {fallback.name}{split})"
        self.needs_hidden = fallback.needs_hidden
        self.hidden_layers = tuple(getattr(fallback, "hidden_layers", ()))  # a fused head's features (the engine's)
        self.vocab_size = fallback.vocab_size
        self.used: list[str] = []  # per round of the current generation: "ngram" or "fallback"
        self._last, self._drafted = "fallback", 0

    def begin(self, target: Target, prompt_ids: torch.Tensor) -> None:
        self.used = []
        for length in self.lengths.values():
            if isinstance(length, CostModel):
                length.reset()
        self.fallback.begin(target, prompt_ids)

    def propose(self, ctx: DraftContext, k: int, sampler: Sampler) -> Proposal:
        k_lookup, why_lookup = self._k("ngram", k)
        found = self.lookup.propose(ctx, k_lookup, sampler) if k_lookup else None
        if found is not None and found.tokens.numel():
            self._last, prop, why = "ngram", found, why_lookup
        else:
            k_model, why = self._k("fallback", k)
            self._last = "fallback"
            prop = self.fallback.propose(ctx, k_model, sampler) if k_model else _nothing(ctx)
        self.used.append(self._last)
        self._drafted = prop.tokens.numel()
        if any(v is not None for v in self.lengths.values()):
            source = "prompt lookup" if self._last == "ngram" else self.fallback.name
            prop.note = f"hybrid: {source} drafted" + (f" ({why})" if why else "")
        return prop

    def _k(self, source: str, k: int) -> tuple[int, str]:
        length = self.lengths[source]
        if length is None:
            return k, ""
        if isinstance(length, int):
            return min(k, length), f"its k {length}"
        plan = length.plan()
        return min(k, plan.k), plan.reason

    def rollback(self, accepted: int) -> None:
        length = self.lengths[self._last]
        if isinstance(length, CostModel) and self._drafted:  # each source learns its own acceptance
            length.observe(SimpleNamespace(drafted=[0] * self._drafted, accepted=accepted))
        # after a lookup round the fallback drafted nothing: its cache (if any) holds committed tokens only and
        # catches up on its next call
        if self._last == "fallback":
            self.fallback.rollback(accepted)

    def kv_length(self) -> int | None:
        return self.fallback.kv_length()


def _length(name: str, value: Any, k_max: int, verify_cost: VerifyCost | dict[int, float] | None, c: float
            ) -> int | CostModel | None:
    if value is None:
        return None
    if value == "auto":
        return CostModel(k_max=k_max, verify_cost=verify_cost, draft_cost=c)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ValueError(f"{name}: expected None, an integer >= 0 or 'auto', got {value!r}")


def _nothing(ctx: DraftContext) -> Proposal:
    return Proposal(torch.empty(0, dtype=torch.long, device=ctx.ids.device))
