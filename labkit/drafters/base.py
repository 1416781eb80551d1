"""Drafter helpers; the protocol itself (``Drafter``, ``DraftContext``, ``Proposal``) lives in labkit.core.drafter
because the engine consumes it, and stays importable from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from labkit.core.drafter import DraftContext, Drafter, Proposal, empty_proposal
from labkit.core.sampling import Sampler

__all__ = ["DraftContext", "DraftSteps", "Drafter", "Proposal", "empty_proposal"]


@dataclass
class DraftSteps:
    """One round's drafts as a drafter draws them, one token at a time; ``proposal()`` packs them.

    Keeps each token's q(token) always and the full q only under sampling (greedy verification compares tokens:
    no k x V distribution is built), and asks the draft-length policy after each token whether to stop.
    """

    sampler: Sampler
    tokens: list[torch.Tensor] = field(default_factory=list)
    q_tokens: list[torch.Tensor] = field(default_factory=list)
    probs: list[torch.Tensor] = field(default_factory=list)

    def add(self, tok: torch.Tensor, q: torch.Tensor, index: torch.Tensor | None = None) -> bool:
        """Record ``tok`` drawn from ``q`` (``index``: its place in q when q covers candidates only); True = stop."""
        self.tokens.append(tok)
        self.q_tokens.append(q[tok if index is None else index])
        if not self.sampler.greedy:
            self.probs.append(q)
        return self.sampler.should_stop(self.q_tokens[-1])  # the draft-length policy's confidence threshold

    def proposal(self, q: torch.Tensor | None = None, reused_target_state: int = 0) -> Proposal:
        """The drafts as a Proposal; ``q`` overrides the stacked distributions (e.g. scattered to the vocabulary)."""
        if q is None and self.probs:
            q = torch.stack(self.probs)
        return Proposal(torch.cat(self.tokens), q, reused_target_state=reused_target_state,
                        q_tokens=torch.cat(self.q_tokens))
