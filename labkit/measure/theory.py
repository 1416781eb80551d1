"""What speculative decoding should give, from acceptance rate alpha, draft length k and cost ratio c.

Leviathan et al. 2022: with i.i.d. acceptance alpha, a round yields (1 - alpha^(k+1)) / (1 - alpha) tokens
(bonus included) and costs k draft steps (each c target forwards) + 1 target forward.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from labkit.core.verify_cost import VerifyCost, as_verify_cost


def _check(alpha: float, k: int, c: float = 0.0) -> None:
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha: must be in [0, 1], got {alpha!r}")
    if not isinstance(k, int) or k < 0:
        raise ValueError(f"k: must be an integer >= 0, got {k!r}")
    if c < 0:
        raise ValueError(f"c: must be >= 0, got {c!r}")


def expected_tokens_per_verify(alpha: float, k: int) -> float:
    """(1 - alpha^(k+1)) / (1 - alpha): expected tokens per target forward, bonus included."""
    _check(alpha, k)
    if alpha == 1:
        return float(k + 1)
    return (1 - alpha ** (k + 1)) / (1 - alpha)


def expected_speedup(alpha: float, k: int, c: float, verify_cost: float = 1.0) -> float:
    """Wall-time speedup over plain decoding the theory expects: tokens per round / (verify_cost * (1 + k * c)).
    (labkit.core.metrics.speedup is the measured one: a ratio of two measured speeds.)

    ``c`` is labkit.core.metrics.draft_cost: one draft step in verify forwards, timed in the same rounds.
    ``verify_cost`` is T(k+1)/T(1), a verify forward over k+1 tokens in one-token forwards (``VerifyCost.at(k)``,
    e.g. labkit.measure.machine.reference's); 1.0 is the textbook assumption of a free verify, where this is
    Leviathan et al.'s (1 - alpha^(k+1)) / ((1 - alpha)(k c + 1)).
    """
    _check(alpha, k, c)
    return expected_tokens_per_verify(alpha, k) / ((verify_cost if k else 1.0) * (1 + k * c))


def best_k(alpha: float, c: float, k_max: int = 32, verify_cost: VerifyCost | Mapping[int, float] | None = None
           ) -> tuple[int, float]:
    """The k in 0..k_max with the highest expected speedup, and that speedup. With a measured ``verify_cost``, only
    its measured ks (and 0) are candidates (``VerifyCost(cost.upto(k_max))`` makes every k one); without one, every
    k with a free verify."""
    cost = as_verify_cost(verify_cost)
    ks = [0, *(k for k in cost.ks if k <= k_max)] if cost.ratios else range(k_max + 1)
    return max(((k, expected_speedup(alpha, k, c, cost.at(k))) for k in ks), key=lambda t: t[1])


def expected_acceptance_by_position(alpha: float, k: int) -> list[float]:
    """P(draft position i is accepted) = alpha^i for i = 1..k, under i.i.d. acceptance: what the theory expects of
    labkit.core.metrics' acceptance_by_position (lab.figures.position_acceptance measures it)."""
    _check(alpha, k)
    return [alpha**i for i in range(1, k + 1)]


def served_speedup(counts: Any, verify_cost: VerifyCost) -> float | None:
    """What an engine's own counters and its verify cost predict for a free drafter (n-gram): tokens per verify over
    the mean cost of its verify steps, where a step without a draft costs one forward and a step with one costs
    V(mean draft length). ``counts``: labkit.core.metrics Counts (a server's counters will do)."""
    from labkit.core import metrics

    steps, tpv = counts.rounds, metrics.tokens_per_verify(counts)
    if not steps or tpv is None:
        return None
    draft_len = counts.draft_tokens / counts.drafts if counts.drafts else 0.0
    cost = ((steps - counts.drafts) + counts.drafts * as_verify_cost(verify_cost).at(draft_len)) / steps
    return tpv / cost
