"""Turning logits into the distribution tokens are drawn from: temperature, top-k, top-p.

The same warp is applied to the target (p) and to every drafter (q); verification is lossless only then.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

MAX_K = 32  # longest draft the engine accepts; beyond it verify cost grows and acceptance is ~0 anyway


@dataclass(frozen=True)


class SamplingConfig:
    temperature: float = 0.0
    top_k: int | None = None
    top_p: float | None = None

    def __post_init__(self) -> None:
        t = self.temperature
        if not isinstance(t, int | float) or t != t or t < 0:
            raise ValueError(f"temperature: must be a number >= 0 (0 = greedy), got {t!r}")
        if self.top_k is not None and (not isinstance(self.top_k, int) or self.top_k < 1):
            raise ValueError(f"top_k: must be an integer >= 1 or None, got {self.top_k!r}")
        if self.top_p is not None and (not isinstance(self.top_p, int | float) or not 0 < self.top_p <= 1):
            raise ValueError(f"top_p: must be in (0, 1] or None, got {self.top_p!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def warp(logits: torch.Tensor, cfg: SamplingConfig) -> torch.Tensor:
    """Probabilities [..., V] after temperature, then top-k, then top-p (the order transformers uses)."""
    x = logits.float()
    if cfg.greedy:
        return torch.softmax(x, dim=-1)  # only for display: greedy decisions use argmax
    x = x / cfg.temperature
    if cfg.top_k is not None and cfg.top_k < x.shape[-1]:
        kth = torch.topk(x, cfg.top_k, dim=-1).values[..., -1:]
        x = x.masked_fill(x < kth, float("-inf"))
    if cfg.top_p is not None and cfg.top_p < 1:
        sorted_x, idx = torch.sort(x, dim=-1, descending=False)
        cum = torch.softmax(sorted_x, dim=-1).cumsum(dim=-1)
        drop_sorted = cum <= 1 - cfg.top_p
        drop_sorted[..., -1] = False  # always keep the most likely token
        drop = drop_sorted.scatter(-1, idx, drop_sorted)
        x = x.masked_fill(drop, float("-inf"))
    return torch.softmax(x, dim=-1)


def sample(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One draw from ``probs`` [..., V] (need not sum to 1) as a [..., 1] long tensor, without a host sync.

    ``torch.multinomial`` reads two values on the host to validate its input (a GPU sync per draw); this is the
    same exponential-race draw it makes internally, so a seed gives the same token as ``torch.multinomial``.
    """
    race = torch.empty_like(probs).exponential_(1, generator=generator)
    return (probs / race).argmax(dim=-1, keepdim=True)


class Sampler:
    """What a drafter uses to pick a token, and the round's rule for when to stop drafting.

    Greedy: the argmax; sampling: a seeded draw from the warped q. ``min_confidence`` (a draft-length policy's
    threshold, e.g. ``ConfidenceStop``) stops a round after a drafted token the drafter itself gave q below it.
    """

    def __init__(self, cfg: SamplingConfig, generator: torch.Generator, min_confidence: float | None = None):
        self.cfg = cfg
        self.generator = generator
        self.min_confidence = min_confidence
        self.stopped: tuple[int, float] | None = None  # (position, q) of the token that stopped this round's draft
        self.checked = 0  # drafted tokens this round whose drafter asked should_stop
        self.stop_rule: Any = None  # a draft-length policy's rule on (position, q, survival), e.g. SurvivalStop's
        self.survival = 1.0  # product of this round's drafted q so far

    @property
    def greedy(self) -> bool:
        return self.cfg.greedy

    def start_round(self, min_confidence: float | None = None, stop_rule: Any = None) -> None:
        self.min_confidence, self.stopped, self.checked = min_confidence, None, 0
        self.stop_rule, self.survival = stop_rule, 1.0

    def pick(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (token [1] long, probs [V]) from logits [V]; the token stays on device (no host sync)."""
        probs = warp(logits, self.cfg)
        if self.cfg.greedy:  # fp32 argmax: same index, several times faster than bf16's on CPU
            return logits.float().argmax(dim=-1, keepdim=True), probs
        return sample(probs, self.generator), probs

    def should_stop(self, q_token: torch.Tensor) -> bool:
        """After drafting a token with drafter probability ``q_token``: stop this round's draft here?

        Only a confidence threshold reads q on the host (one sync per drafted token, as transformers'
        ``assistant_confidence_threshold`` does); without one, drafting never waits for the device.
        """
        self.checked += 1
        if self.min_confidence is None and self.stop_rule is None:
            return False
        q = float(q_token)
        self.survival *= q
        if self.stop_rule is not None:
            if self.stop_rule(self.checked, q, self.survival):
                self.stopped = (self.checked, q)
                return True
            return False
        if q < self.min_confidence:
            self.stopped = (self.checked, q)
            return True
        return False
