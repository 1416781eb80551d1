"""What speculative decoding should give, from acceptance rate alpha, draft length k and cost ratio c.

Leviathan et al. 2022: with i.i.d. acceptance alpha, a round yields (1 - alpha^(k+1)) / (1 - alpha) tokens
(bonus included) and costs k draft steps (each c target forwards) + 1 target forward.
"""

from __future__ import annotations

from collections.abc import Mapping


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


def speedup(alpha: float, k: int, c: float, verify_cost: float = 1.0) -> float:
    """Wall-time speedup over plain decoding: tokens per round / (k * c + verify_cost).

    ``verify_cost`` is T(k+1)/T(1), a verify forward over k+1 tokens in one-token forwards (measured by
    labkit.measure.timing.verify_cost_curve); 1.0 is the textbook assumption of a free verify.
    """
    _check(alpha, k, c)
    return expected_tokens_per_verify(alpha, k) / (k * c + (verify_cost if k else 1.0))


def best_k(alpha: float, c: float, k_max: int = 32, verify_cost: Mapping[int, float] | None = None
           ) -> tuple[int, float]:
    """The k in 0..k_max with the highest expected speedup, and that speedup. With a measured ``verify_cost``
    curve {k: T(k+1)/T(1)}, only the measured ks (and 0) are candidates."""
    if verify_cost is None:
        return max(((k, speedup(alpha, k, c)) for k in range(k_max + 1)), key=lambda t: t[1])
    ks = [0, *sorted(k for k in verify_cost if 0 < k <= k_max)]
    return max(((k, speedup(alpha, k, c, verify_cost.get(k, 1.0))) for k in ks), key=lambda t: t[1])


def position_acceptance(alpha: float, k: int) -> list[float]:
    """P(draft position i is accepted) = alpha^i for i = 1..k, under i.i.d. acceptance."""
    _check(alpha, k)
    return [alpha**i for i in range(1, k + 1)]


def alpha_from_mean_accepted_length(tau: float, k: int, tol: float = 1e-9) -> float:
    """Invert expected_tokens_per_verify: the alpha that gives mean accepted length tau at draft length k."""
    if not 1 <= tau <= k + 1:
        raise ValueError(f"tau: must be in [1, k+1] = [1, {k + 1}], got {tau!r}")
    lo, hi = 0.0, 1.0
    while hi - lo > tol:  # monotone in alpha: bisection is plenty
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if expected_tokens_per_verify(mid, k) < tau else (lo, mid)
    return (lo + hi) / 2
