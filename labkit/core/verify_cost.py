"""The verify cost: what a target forward over k + 1 tokens costs in one-token forwards, T(k+1)/T(1), by draft length k.

One type for every place that means it: labkit's machine reference, the theory, the cost model, the engines'
measured curves (llama.cpp, vLLM), the doctor, the figures and the notebooks. It is always keyed by k, the draft
length (a verify over n = k + 1 tokens); ``at(k)`` interpolates between measured ks. The curve the lab computes with
is clamped at 1 (a forward over more tokens does not do less work) and made non-decreasing (pool adjacent violators)
here, in ``from_measured``, and nowhere else; the measured medians stay in ``raw``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class VerifyCost:
    """T(k+1)/T(1) by draft length k, with its spread, its source and where it was measured."""

    ratios: dict[int, float]  # {k: T(k+1)/T(1)}, clamped at 1 and non-decreasing: what the lab computes with
    spread: dict[int, float] = field(default_factory=dict)  # {k: interquartile range of the measured ratio}
    raw: dict[int, float] = field(default_factory=dict)  # {k: measured median}, before clamping
    source: str = "given"  # how it was measured, e.g. "labkit machine reference, 12 interleaved rounds"
    where: str = ""  # what it holds for: machine, engine, model, dtype, threads

    def __post_init__(self) -> None:
        for name in ("ratios", "spread", "raw"):  # JSON round trips turn keys into strings
            object.__setattr__(self, name, {int(k): float(v) for k, v in getattr(self, name).items()})
        bad = [k for k, v in self.ratios.items() if k < 1 or v <= 0]
        if bad:
            raise ValueError(f"verify cost: keys are draft lengths k >= 1 with positive ratios, got {bad}")

    @classmethod
    def from_measured(cls, raw: Mapping[int, float], spread: Mapping[int, float] | None = None, source: str = "",
                      where: str = "") -> VerifyCost:
        """From measured medians {k: T(k+1)/T(1)}: clamped at 1 and made non-decreasing (the one place)."""
        raw = {int(k): float(v) for k, v in raw.items()}
        return cls(monotone({k: max(1.0, v) for k, v in raw.items()}), dict(spread or {}), raw, source, where)

    @classmethod
    def free(cls) -> VerifyCost:
        """The textbook assumption: a verify over any number of tokens costs one forward."""
        return cls({}, source="assumed free (the textbook's verify)")

    @property
    def ks(self) -> list[int]:
        return sorted(self.ratios)

    def at(self, k: float) -> float:
        """V(k): 1 at k = 0 and without measurements; linear between measured ks, the last segment's slope beyond."""
        if k == 0 or not self.ratios:
            return 1.0
        ks = self.ks
        lo = max((x for x in ks if x <= k), default=0)
        hi = min((x for x in ks if x >= k), default=None)
        if hi is None:
            lo, hi = (ks[-2], ks[-1]) if len(ks) > 1 else (0, ks[-1])
        v_lo, v_hi = (1.0 if lo == 0 else self.ratios[lo]), self.ratios[hi]
        return v_lo if hi == lo else v_lo + (v_hi - v_lo) * (k - lo) / (hi - lo)

    def upto(self, k_max: int) -> dict[int, float]:
        """V(k) at every k = 1..k_max."""
        return {k: self.at(k) for k in range(1, k_max + 1)}

    def half_spread(self, k: int) -> float:
        return self.spread.get(k, 0.0) / 2

    def interval(self, k: int) -> tuple[float, float]:
        """The measured median at k (``raw``, else the curve) +- half its interquartile range."""
        mid = self.raw.get(k, self.ratios[k])
        return mid - self.half_spread(k), mid + self.half_spread(k)

    def text(self) -> str:
        """"2 tokens 1.05x ±0.02, 3 tokens 1.10x ±0.03, ..." (n = k + 1 tokens in the forward)."""
        return ", ".join(f"{k + 1} tokens {v:.2f}x" + (f" ±{self.half_spread(k):.2f}" if k in self.spread else "")
                         for k, v in sorted(self.ratios.items()))

    def as_dict(self) -> dict[str, Any]:
        return {"ratios": self.ratios, "spread": self.spread, "raw": self.raw, "source": self.source,
                "where": self.where}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> VerifyCost:
        return cls(dict(d["ratios"]), dict(d.get("spread", {})), dict(d.get("raw", {})), d.get("source", "given"),
                   d.get("where", ""))


def as_verify_cost(curve: VerifyCost | Mapping[int, float] | None) -> VerifyCost:
    """A VerifyCost from one, a plain {k: ratio} mapping (taken as given), or None (a free verify)."""
    if curve is None:
        return VerifyCost.free()
    if isinstance(curve, VerifyCost):
        return curve
    return VerifyCost(dict(curve))


def monotone(curve: Mapping[int, float]) -> dict[int, float]:
    """The non-decreasing curve closest to ``curve`` in least squares (pool adjacent violators), by k."""
    ks = sorted(curve)
    blocks: list[list[float]] = []  # [sum, count] per pooled block
    for k in ks:
        blocks.append([curve[k], 1.0])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            s, n = blocks.pop()
            blocks[-1][0] += s
            blocks[-1][1] += n
    out: list[float] = []
    for s, n in blocks:
        out += [s / n] * int(n)
    return dict(zip(ks, out, strict=True))
