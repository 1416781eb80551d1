"""A what-if drafter: proposes the target's own next token with probability alpha, another token otherwise."""

from __future__ import annotations

import torch

from labkit.core.sampling import Sampler, sample
from labkit.drafters.base import DraftContext
from labkit.drafters.draft_model import DraftModelDrafter
from labkit.models.load import Target


class SyntheticDrafter(DraftModelDrafter):
    """Acceptance you choose, on any model (random weights included).

    The "target's own next token" comes from an oracle: the target itself, run on a cache of its own. The draw is
    from q = alpha * onehot(oracle) + (1 - alpha) * uniform(other tokens), and q is reported, so verification stays
    lossless. In greedy decoding each drafted token is accepted with probability alpha, independently.
    The oracle costs a target forward per drafted token, so its timings say nothing about a real drafter's cost.
    """

    def __init__(self, alpha: float = 0.8):
        if not isinstance(alpha, int | float) or not 0 <= alpha <= 1:
            raise ValueError(f"alpha: must be in [0, 1], got {alpha!r}")
        super().__init__(None, name=f"synthetic(alpha={alpha:g})")
        self.alpha = float(alpha)

    def begin(self, target: Target, prompt_ids: torch.Tensor) -> None:
        self.draft = target
        super().begin(target, prompt_ids)

    def pick(self, logits: torch.Tensor, sampler: Sampler, ctx: DraftContext) -> tuple[torch.Tensor, torch.Tensor]:
        V = logits.shape[-1]
        q = torch.full((V,), (1 - self.alpha) / (V - 1), device=logits.device)
        q[logits.argmax(-1, keepdim=True)] = self.alpha  # a 1-D index: a 0-d one is read on the host
        return sample(q, sampler.generator), q
