"""A draft model that always proposes its argmax: what goes wrong when a deterministic draft reports a softmax q."""

from __future__ import annotations

from typing import Any

import torch

from labkit.core.sampling import Sampler
from labkit.drafters.base import DraftContext
from labkit.drafters.draft_model import DraftModelDrafter


class ArgmaxDrafter(DraftModelDrafter):
    """A draft model that always proposes its argmax.

    ``honest=False`` reports the draft model's softmax as q although the token was not drawn from it (what an
    argmax drafter plugged into the sampling rule amounts to): output is no longer the target's distribution.
    ``honest=True`` reports q = one-hot, which is the truth for a deterministic proposal: lossless again.
    """

    def __init__(self, model: Any, honest: bool = False):
        super().__init__(model, name=f"argmax-draft({'one-hot q' if honest else 'softmax q'})")
        self.honest = honest

    def pick(self, logits: torch.Tensor, sampler: Sampler, ctx: DraftContext) -> tuple[torch.Tensor, torch.Tensor]:
        tok = logits.argmax(dim=-1, keepdim=True)
        _, probs = sampler.pick(logits)  # the warped distribution, as a sampled draft would report it
        if self.honest:
            probs = torch.nn.functional.one_hot(tok[0], probs.shape[-1]).to(probs.dtype)
        return tok, probs
