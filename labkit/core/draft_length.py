"""How many tokens to draft each round: fixed, until the drafter loses confidence, transformers' heuristic, or the k
that a cost model says is fastest.

A policy plans a round (``plan``: at most k tokens, and why), and learns from the round's record (``observe``). The
engine draws no conclusion from the plan: any k keeps greedy output equal to plain greedy and sampling lossless,
because verification alone decides what is kept. ``SpeculativeDecoder(..., k=4)`` is ``FixedK(4)``; ``k="auto"`` is
``CostModel()``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from labkit.core.metrics import draft_cost, round_counts
from labkit.core.records import RoundRecord
from labkit.core.sampling import MAX_K
from labkit.core.verify_cost import VerifyCost, as_verify_cost

DEFAULT_VERIFY_SLOPE = 0.05  # with no measured curve: a (k+1)-token verify costs 1 + 0.05 k one-token forwards


@dataclass(frozen=True)
class Plan:
    k: int  # draft at most this many tokens
    reason: str  # why, in words (the RoundRecord's draft_reason unless drafting stopped or was cut)
    min_confidence: float | None = None  # stop drafting after a token the drafter gave a probability below this
    stop_rule: Any = None  # or a StopRule: stop after drafted token j when rule(j, q_j, survival S_j) says so


class DraftLengthPolicy:
    """Base class: ``plan`` before each round, ``observe`` its record after it, ``reset`` when a generation starts."""

    k_max: int = 0  # the most a plan may ask for (sizes the engine's buffers)

    def reset(self) -> None:
        """A new generation starts: forget what the last one taught."""

    def plan(self) -> Plan:
        raise NotImplementedError

    def observe(self, record: RoundRecord) -> None:
        """The round just verified; adapt to it."""


class FixedK(DraftLengthPolicy):
    """The same k every round (what an integer k means)."""

    def __init__(self, k: int):
        self.k_max = _check_int("k", k, 0)

    def plan(self) -> Plan:
        return Plan(self.k_max, "fixed k")

    def __repr__(self) -> str:
        return f"FixedK({self.k_max})"


class ConfidenceStop(DraftLengthPolicy):
    """Draft until the drafter's own probability of its draft falls below ``threshold`` (that token is still
    proposed, as with transformers' ``assistant_confidence_threshold``), at most ``k_max`` tokens.

    Checking q on the host costs one device sync per drafted token; deterministic drafters (n-gram) report q = 1.
    """

    def __init__(self, threshold: float = 0.4, k_max: int = 8):
        if not isinstance(threshold, int | float) or not 0 <= threshold <= 1:
            raise ValueError(f"threshold: must be a probability in [0, 1], got {threshold!r}")
        self.threshold, self.k_max = float(threshold), _check_int("k_max", k_max, 1)

    def plan(self) -> Plan:
        return Plan(self.k_max, f"k_max {self.k_max} reached, every q >= {self.threshold:g}", self.threshold)

    def __repr__(self) -> str:
        return f"ConfidenceStop({self.threshold:g}, k_max={self.k_max})"


class StopRule:
    """The survival policy's rule within one round (``Sampler.should_stop`` calls it after each drafted token).

    After token j with drafter probability q_j the chain survives with S_j = q_1 ... q_j (if q is calibrated), the
    round so far yields E_j = 1 + S_1 + ... + S_j tokens for V(j) + c j forwards, and one more token would add about
    S_j q_j (the next token's q taken as this one's) for V(j+1) - V(j) + c. Draft on while that marginal rate is at
    least the round's rate so far: S_j q_j / (V(j+1) - V(j) + c) >= E_j / (V(j) + c j).
    """

    def __init__(self, verify_cost: VerifyCost, c: float):
        self.verify_cost, self.c = verify_cost, c
        self.tokens = 1.0  # E_j so far

    def __call__(self, j: int, q: float, survival: float) -> bool:
        self.tokens += survival
        gain = survival * q
        marginal = self.verify_cost.at(j + 1) - self.verify_cost.at(j) + self.c
        rate = self.tokens / (self.verify_cost.at(j) + self.c * j)
        self.last = (gain, marginal, rate)
        return gain / max(marginal, 1e-9) < rate

    def why(self, j: int, q: float) -> str:
        gain, marginal, rate = self.last
        return (f"survival: after token {j} (q {q:.2f}) one more adds {gain:.2f} tokens for {marginal:.3f} forwards, "
                f"below the round's {rate:.2f} tokens per forward")


class SurvivalStop(DraftLengthPolicy):
    """Draft while the chain's survival probability times the next token's q pays for the marginal verify cost
    measured on this machine (``StopRule``), at most ``k_max`` tokens. The verify-cost curve and the draft cost c
    are those of ``CostModel`` (c measured per round unless given). Reads q on the host once per drafted token."""

    def __init__(self, k_max: int = 8, verify_cost: VerifyCost | Mapping[int, float] | Sequence[float] | None = None,
                 draft_cost: float | None = None):
        self.k_max = _check_int("k_max", k_max, 1)
        self.cost = CostModel(k_max, verify_cost, draft_cost)

    def reset(self) -> None:
        self.cost.reset()

    def plan(self) -> Plan:
        note = f"c {self.cost.c:.3f}" + ("" if self.cost.measured else ", assumed verify curve")
        return Plan(self.k_max, f"survival: k_max {self.k_max} reached, every extra token paid ({note})",
                    stop_rule=StopRule(self.cost.verify_cost, self.cost.c))

    def observe(self, record: RoundRecord) -> None:
        self.cost.observe(record)  # only its draft-cost estimate is used

    def __repr__(self) -> str:
        return f"SurvivalStop(k_max={self.k_max}{', measured verify curve' if self.cost.measured else ''})"


class Heuristic(DraftLengthPolicy):
    """transformers' "heuristic" schedule: k + 2 after a round whose every draft was accepted, k - 1 otherwise."""

    def __init__(self, k_start: int = 4, k_max: int = 16):
        self.k_max = _check_int("k_max", k_max, 1)
        self.k_start = _check_int("k_start", k_start, 1, self.k_max)
        self.reset()

    def reset(self) -> None:
        self.k, self._why = self.k_start, f"heuristic: k {self.k_start} (start)"

    def plan(self) -> Plan:
        return Plan(self.k, self._why)

    def observe(self, record: RoundRecord) -> None:
        full = record.k_requested > 0 and record.accepted == record.k_requested
        old, self.k = self.k, min(self.k + 2, self.k_max) if full else max(self.k - 1, 1)
        self._why = f"heuristic: k {old} -> {self.k} after {'full accept' if full else 'a rejection'}"

    def __repr__(self) -> str:
        return f"Heuristic(k_start={self.k_start}, k_max={self.k_max})"


class CostModel(DraftLengthPolicy):
    """Each round, the k in 0..k_max with the most expected tokens per unit of time.

    A round drafting k tokens yields E(k) = 1 + a_1 + a_1 a_2 + ... + a_1...a_k tokens, where a_i is the running
    (decayed) rate at which draft position i is accepted once reached, and costs V(k) + c k one-token target
    forwards: V(k) = T(k+1)/T(1) is the verify cost (``verify_cost``: a labkit.core.verify_cost.VerifyCost, as
    ``labkit doctor`` / labkit.measure.machine.reference measure it, or {k: ratio} or a list indexed by k; linear
    in between and beyond) and c
    the cost of one draft step in one-token target forwards (``draft_cost``; None: each round's
    labkit.core.metrics.draft_cost times V(n)).
    With no curve it assumes V(k) = 1 + 0.05 k, and says so in every reason.
    """

    def __init__(self, k_max: int = 8, verify_cost: VerifyCost | Mapping[int, float] | Sequence[float] | None = None,
                 draft_cost: float | None = None, decay: float = 0.95, probe_every: int = 8):
        self.k_max = _check_int("k_max", k_max, 1)
        self.measured = verify_cost is not None
        # without a measurement: V(k) = 1 + DEFAULT_VERIFY_SLOPE k (a line through V(0) = 1, extrapolated beyond)
        self.verify_cost = as_verify_cost(_curve(verify_cost)) if self.measured else VerifyCost(
            {1: 1 + DEFAULT_VERIFY_SLOPE, 2: 1 + 2 * DEFAULT_VERIFY_SLOPE}, source="assumed")
        if draft_cost is not None and (not isinstance(draft_cost, int | float) or draft_cost < 0):
            raise ValueError(f"draft_cost: must be a number >= 0 (one draft step in target forwards), got "
                             f"{draft_cost!r}")
        self.draft_cost, self.decay, self.probe_every = draft_cost, decay, probe_every
        self.reset()

    def reset(self) -> None:
        self.reached = [0.0] * self.k_max  # decayed counts: rounds that verified position i ...
        self.hits = [0.0] * self.k_max  # ... and accepted it there
        self.c = self.draft_cost if self.draft_cost is not None else 0.1  # until a round has been timed
        self._timed = 0  # drafted rounds timed so far
        self._idle = 0  # rounds in a row that drafted nothing by choice

    def acceptance(self) -> list[float]:
        """a_i for i = 1..k_max; a position never reached borrows the previous one's rate (the first: 1/2)."""
        rates, prior = [], 0.5
        for reached, hits in zip(self.reached, self.hits, strict=True):
            prior = (hits + prior) / (reached + 1)  # one pseudo-round at the prior
            rates.append(prior)
        return rates

    def plan(self) -> Plan:
        rates, tokens, reach, best = self.acceptance(), [1.0], 1.0, (0, 1.0, 1.0)
        for k in range(1, self.k_max + 1):
            reach *= rates[k - 1]
            tokens.append(tokens[-1] + reach)
            cost = self.verify_cost.at(k) + self.c * k
            if tokens[k] / cost > best[1] / best[2]:
                best = (k, tokens[k], cost)
        k, e, t = best
        note = f"a1 {rates[0]:.2f}, c {self.c:.3f}" + ("" if self.measured else ", assumed verify curve")
        if k == 0:
            self._idle += 1
            if self._idle >= self.probe_every:  # drafting nothing teaches nothing: try one token now and then
                self._idle = 0
                return Plan(1, f"cost model: probe k=1 after {self.probe_every} rounds at k=0 ({note})")
            return Plan(0, f"cost model: drafting does not pay ({note})")
        self._idle = 0
        return Plan(k, f"cost model: k={k} maximises {e:.2f} tokens / {t:.2f} forwards ({note})")

    def observe(self, record: RoundRecord) -> None:
        n = len(record.drafted)
        self.reached = [x * self.decay for x in self.reached]
        self.hits = [x * self.decay for x in self.hits]
        for i in range(min(record.accepted + 1, n, self.k_max)):  # position i was verified: all before it accepted
            self.reached[i] += 1
            self.hits[i] += i < record.accepted
        measured = draft_cost(round_counts(record)) if self.draft_cost is None else None
        if measured is not None:
            c = measured * self.verify_cost.at(n)  # metrics' c is per verify forward of n+1 tokens; here per T(1)
            self.c = c if not self._timed else 0.8 * self.c + 0.2 * c  # the first timing replaces the guess
            self._timed += 1

    def __repr__(self) -> str:
        return f"CostModel(k_max={self.k_max}{', measured verify curve' if self.measured else ''})"


def as_policy(k: Any) -> DraftLengthPolicy:
    """An int k, "auto" or a policy object, as a policy; anything else is a one-line error."""
    if isinstance(k, DraftLengthPolicy):
        if not 0 <= k.k_max <= MAX_K:
            raise ValueError(f"k: the policy's k_max must be in 0..{MAX_K}, got {k.k_max}")
        return k
    if isinstance(k, str) and k == "auto":
        return CostModel()
    if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k <= MAX_K:
        raise ValueError(f"k: must be an integer in 0..{MAX_K} (draft tokens per round), 'auto' or a draft-length "
                         f"policy from labkit.core.draft_length, got {k!r}")
    return FixedK(k)


def _check_int(name: str, value: Any, lo: int, hi: int = MAX_K) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ValueError(f"{name}: must be an integer in {lo}..{hi}, got {value!r}")
    return value


def _curve(verify_cost: VerifyCost | Mapping[int, float] | Sequence[float] | None
           ) -> VerifyCost | dict[int, float] | None:
    if verify_cost is None or isinstance(verify_cost, VerifyCost):
        return verify_cost
    curve = dict(verify_cost) if isinstance(verify_cost, Mapping) else dict(enumerate(verify_cost))
    curve = {int(k): float(v) for k, v in curve.items() if int(k) > 0}
    if not curve or any(v <= 0 for v in curve.values()):
        raise ValueError("verify_cost: must map draft lengths k >= 1 to T(k+1)/T(1) > 0, e.g. {1: 1.02, 4: 1.1} "
                         "(measure it with `labkit doctor`)")
    return curve


POLICIES = ("auto", "heuristic", "confidence", "survival")  # the names policy_from_name takes


def policy_from_name(name: str, k_max: int, verify_cost: VerifyCost | Mapping[int, float] | None = None
                     ) -> DraftLengthPolicy:
    """A dynamic draft-length policy by name (one of POLICIES), drafting at most ``k_max`` tokens a round;
    ``verify_cost`` (T(k+1)/T(1) by k, measured on this machine) feeds "auto" and "survival"."""
    if name == "auto":  # the cost model, fed this machine's measured verify cost
        return CostModel(k_max=k_max, verify_cost=verify_cost)
    if name == "heuristic":
        return Heuristic(k_start=min(4, k_max), k_max=k_max)
    if name == "confidence":
        return ConfidenceStop(k_max=k_max)
    if name == "survival":  # confidence-aware: survival x q against this machine's marginal verify cost
        return SurvivalStop(k_max=k_max, verify_cost=verify_cost)
    raise ValueError(f"policies: unknown policy {name!r}; choose from {', '.join(POLICIES)}")
