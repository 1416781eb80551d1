"""The one small protocol every drafter implements (the engine consumes it, so it lives in the core).

A round: the engine calls ``propose`` (draft up to k tokens), verifies them with one target forward, then calls
``rollback(accepted)`` so a drafter with its own KV cache can drop what the target rejected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from labkit.core.sampling import Sampler
from labkit.models.load import Target


@dataclass
class DraftContext:
    ids: torch.Tensor  # [L] every committed token (prompt + generated); the last one is not yet in the target cache
    target: Target
    target_cache: Any  # the target's KV cache (read-only for drafters; MTP drafters attend to it)
    hidden: torch.Tensor | None  # target's last hidden state at position L-2 (the one that produced ids[-1])
    round: int
    tokens: list[int] | None = None  # ids again, on the host: read these instead of copying ids off the device


@dataclass
class Proposal:
    tokens: torch.Tensor  # [k'] long, k' <= k, on the target's device
    q: torch.Tensor | None = None  # [k', V] warped drafter probabilities; None = a deterministic proposal
    reused_target_state: int = 0  # target KV positions read instead of recomputed (MTP)
    # [k'] the drafter's probability of each drafted token. In greedy mode (``sampler.greedy``) report this and
    # leave q None: greedy verification compares tokens, so no k x V distribution needs building
    q_tokens: torch.Tensor | None = None
    note: str = ""  # which source drafted and why, for drafters that choose (the hybrid); leads the round's reason


class Drafter:
    """Base class with no-op defaults; subclasses override ``propose`` and whatever else they need."""

    name: str = "drafter"
    needs_hidden: bool = False  # ask the engine for the target's last hidden state
    hidden_layers: tuple[int, ...] = ()  # or, when set, these layers' inputs concatenated (an EAGLE-3-style head)
    vocab_size: int | None = None  # checked against the target's when known

    def begin(self, target: Target, prompt_ids: torch.Tensor) -> None:
        """A new generation starts; prefill any state of your own with ``prompt_ids[:-1]``."""

    def propose(self, ctx: DraftContext, k: int, sampler: Sampler) -> Proposal:
        """Up to k tokens. After each drafted token, ``sampler.should_stop(q_token)`` says whether the round's
        draft-length policy stops here (it reads the device only when the policy has a confidence threshold)."""
        raise NotImplementedError

    def rollback(self, accepted: int) -> None:
        """The target kept ``accepted`` of your last proposal; drop the rest from your own cache."""

    def kv_length(self) -> int | None:
        """Length of your own KV cache, or None if you keep none."""
        return None

    def __repr__(self) -> str:
        return self.name


def empty_proposal(device: torch.device) -> Proposal:
    return Proposal(torch.empty(0, dtype=torch.long, device=device), None)
