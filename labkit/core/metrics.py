"""Every quantity the lab reports, defined once: name, formula and unit here, computed from pooled counts.

The glossary with a worked example is ``docs/metrics.md``. Where vLLM and llama.cpp name a quantity, the name and
the definition are theirs, so a labkit figure and a serving engine's counter mean the same thing:

- draft acceptance rate = accepted draft tokens / draft tokens                      (vLLM, llama.cpp)
- mean acceptance length = 1 + accepted draft tokens / drafts                       (vLLM, llama.cpp)
  where a *draft* is a verify step that had at least one drafted token (vLLM's ``num_drafts``)
- accepted per position i = drafts whose position i was accepted (unconditional counts, vLLM's
  ``num_accepted_tokens_per_pos``); acceptance by position = accepted per position / drafts

labkit's own quantities keep their own names:

- conditional acceptance by position i = accepted at i / verified at i (the draft reached i: every earlier
  position accepted). Always labelled *conditional*: it can rise with i, the unconditional rate cannot.
- tokens per verify = new tokens / verify forwards (rounds, drafted or not): what one target forward yields.
- α (alpha) = accepted / (accepted + rejections): the maximum-likelihood rate of i.i.d. acceptance (each verified
  position is a trial, and a round's first rejection is its only failure). Theory's ``alpha``.
- c (draft cost) = seconds per draft token / seconds per verify forward, both from the same rounds.
- decode tok/s = new tokens / (draft + verify seconds): prefill excluded (speculation does not change it).
- end-to-end tok/s = new tokens / wall seconds of the whole call, prefill and set-up included.

Counts pool by adding (``Counts.__add__``): every ratio divides pooled counts, never averages ratios. No torch, no
I/O here: core, measure, lab, the CLI and the notebooks all call these functions.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any


@dataclass(frozen=True)
class Counts:
    """What a set of rounds did, as counters that add up across rounds, runs, prompts and engines.

    The first five mirror the serving engines' counters (vLLM ``vllm:spec_decode_*``, llama.cpp
    ``llamacpp:spec_decode_*``); an engine that only exposes those leaves the rest at 0.
    """

    drafts: int = 0  # verify steps with >= 1 draft token (vLLM num_drafts)
    draft_tokens: int = 0  # tokens proposed (num_draft_tokens)
    accepted: int = 0  # draft tokens accepted (num_accepted_tokens)
    accepted_per_pos: tuple[int, ...] = ()  # drafts whose position i was accepted (num_accepted_tokens_per_pos)
    new_tokens: int = 0  # tokens emitted (after the cut at EOS / the budget)
    rounds: int = 0  # verify forwards after the prefill, drafted or not
    rejections: int = 0  # rounds that rejected a draft token
    verified_per_pos: tuple[int, ...] = ()  # drafts that reached position i (drafted it, all before accepted)
    drafted_per_pos: tuple[int, ...] = ()  # drafts that proposed position i
    draft_seconds: float = 0.0
    verify_seconds: float = 0.0
    prefill_seconds: float = 0.0
    wall_seconds: float = 0.0  # the whole call (prefill, rounds, set-up): end-to-end
    runs: int = 0  # generations pooled

    def __add__(self, other: Counts) -> Counts:
        out = {}
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            out[f.name] = _add_pos(a, b) if isinstance(a, tuple) else a + b
        return Counts(**out)

    def as_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def _add_pos(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    n = max(len(a), len(b))
    return tuple((a[i] if i < len(a) else 0) + (b[i] if i < len(b) else 0) for i in range(n))


def round_counts(record: Any) -> Counts:
    """One RoundRecord (labkit.core.records) as Counts."""
    n, acc = len(record.drafted), record.accepted
    return Counts(drafts=int(n > 0), draft_tokens=n, accepted=acc,
                  accepted_per_pos=tuple(int(i < acc) for i in range(n)),
                  new_tokens=len(record.emitted), rounds=1, rejections=int(record.rejected_at is not None),
                  verified_per_pos=tuple(int(i <= acc) for i in range(n)), drafted_per_pos=(1,) * n,
                  draft_seconds=record.draft_seconds, verify_seconds=record.verify_seconds)


def counts(items: Any) -> Counts:
    """Pooled Counts of a GenerationResult, a RoundRecord, Counts, or any (nested) iterable of those."""
    if isinstance(items, Counts):
        return items
    if hasattr(items, "drafted") and hasattr(items, "emitted"):  # a RoundRecord
        return round_counts(items)
    if hasattr(items, "rounds") and hasattr(items, "token_ids"):  # a GenerationResult
        total = sum((round_counts(r) for r in items.rounds), Counts())
        return replace(total, prefill_seconds=items.prefill_seconds, wall_seconds=items.seconds, runs=1)
    if isinstance(items, Iterable):
        return sum((counts(x) for x in items), Counts())
    raise TypeError(f"counts: expected RoundRecords, GenerationResults or Counts, got {type(items).__name__}")


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


# ------------------------------------------------------------------------------------ the serving engines' names


def draft_acceptance_rate(c: Counts) -> float | None:
    """Accepted draft tokens / draft tokens (vLLM, llama.cpp). Unit: fraction. None when nothing was drafted."""
    return _ratio(c.accepted, c.draft_tokens)


def mean_acceptance_length(c: Counts) -> float | None:
    """1 + accepted draft tokens / drafts: tokens per verify step that had a draft, the bonus or replacement token
    included (vLLM, llama.cpp). Unit: tokens. None when nothing was drafted."""
    return None if not c.drafts else 1 + c.accepted / c.drafts


def acceptance_by_position(c: Counts) -> list[float]:
    """Accepted per position i / drafts, i = 1..: the share of drafts whose i-th token was accepted (vLLM's
    per-position acceptance rate). Unconditional: it never rises with i."""
    return [a / c.drafts for a in c.accepted_per_pos] if c.drafts else []


def conditional_acceptance_by_position(c: Counts) -> list[float | None]:
    """Accepted at i / drafts that reached i (drafted i, all before accepted): P(accept i | reached i). labkit's
    view, labelled conditional wherever it is shown; None where no draft reached i."""
    return [_ratio(a, v) for a, v in zip(c.accepted_per_pos, c.verified_per_pos, strict=False)]


# ------------------------------------------------------------------------------------ labkit's own quantities


def tokens_per_verify(c: Counts) -> float | None:
    """New tokens / verify forwards (every round, drafted or not). Unit: tokens per target forward; 1.0 is plain
    decoding. Differs from the mean acceptance length where rounds had no draft or output was cut at the end."""
    return _ratio(c.new_tokens, c.rounds)


def mean_draft_length(c: Counts) -> float | None:
    """Draft tokens / rounds: how many tokens a round drafted on average (k under a fixed k, less under a policy)."""
    return _ratio(c.draft_tokens, c.rounds)


def alpha(c: Counts) -> float | None:
    """accepted / (accepted + rejections): the maximum-likelihood i.i.d. acceptance rate, the theory's alpha.

    Every verified draft position is a Bernoulli trial; a round's first rejection is its only failure, and the
    positions after it are never tried. Valid for any k, fixed or dynamic. None when nothing was verified, and for
    a serving engine's counters, which count no rejections (no rounds)."""
    if not c.rounds or (c.accepted and not c.rejections and not c.verified_per_pos):  # engine counters: unknown
        return None
    return _ratio(c.accepted, c.accepted + c.rejections)


def draft_cost(c: Counts) -> float | None:
    """c = (draft seconds / draft tokens) / (verify seconds / rounds): one draft step in verify forwards, both
    timed in the same rounds. theory.expected_speedup takes it with the verify cost. None without drafts or timings."""
    if not c.draft_tokens or not c.rounds or c.verify_seconds <= 0 or c.draft_seconds <= 0:
        return None  # no drafting time: a server that times only its whole decode (it does not split it)
    return (c.draft_seconds / c.draft_tokens) / (c.verify_seconds / c.rounds)


def decode_tok_s(c: Counts) -> float:
    """New tokens / (draft + verify seconds): decoding speed, prefill excluded. Unit: tokens per second."""
    secs = c.draft_seconds + c.verify_seconds
    return c.new_tokens / secs if secs > 0 else 0.0


def end_to_end_tok_s(c: Counts, seconds: float | None = None) -> float:
    """New tokens / wall seconds of the whole call (prefill and set-up included; ``seconds`` overrides the counted
    wall time, e.g. a timing taken around another engine's call). Unit: tokens per second."""
    secs = c.wall_seconds if seconds is None else seconds
    return c.new_tokens / secs if secs > 0 else 0.0


def speedup(tok_s: float | None, plain_tok_s: float | None) -> float | None:
    """tok/s over plain decoding's tok/s, both of the same kind (decode or end-to-end) from the same run."""
    return tok_s / plain_tok_s if tok_s and plain_tok_s else None


def median_over(values: Iterable[float | None]) -> float | None:
    """Median of the values that exist (repeats of one configuration); None when there are none."""
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def spread(values: Sequence[float]) -> float | None:
    """(max - min) / median of repeated measurements of one quantity: the run-to-run spread a difference must
    exceed to mean something. None for fewer than two values."""
    vals = [v for v in values if v is not None]
    if len(vals) < 2 or not statistics.median(vals):
        return None
    return (max(vals) - min(vals)) / statistics.median(vals)


def rate_difference_noise(a: float, trials_a: int, b: float, trials_b: int) -> float:
    """Two binomial standard errors of the difference of two rates (each a share of independent trials): the noise
    a difference in acceptance must exceed to count. A lower bound where trials are correlated (positions of one
    text)."""
    if trials_a <= 0 or trials_b <= 0:
        return float("inf")
    return 2 * (a * (1 - a) / trials_a + b * (1 - b) / trials_b) ** 0.5


# ------------------------------------------------------------------------------------ everything at once


@dataclass(frozen=True)
class Metrics:
    """Every quantity above for one set of pooled counts (what Stats, the sweep rows, the bench rows, ``--json``
    and the notebooks print). Field names are the glossary's."""

    counts: Counts = field(default_factory=Counts)
    draft_acceptance_rate: float | None = None
    mean_acceptance_length: float | None = None
    acceptance_by_position: list[float] = field(default_factory=list)
    conditional_acceptance_by_position: list[float | None] = field(default_factory=list)
    tokens_per_verify: float | None = None
    mean_draft_length: float | None = None
    alpha: float | None = None
    draft_cost: float | None = None
    decode_tok_s: float = 0.0
    end_to_end_tok_s: float = 0.0

    def summary(self) -> str:
        """One line: tokens, rounds, speeds and acceptance, each with its glossary name."""
        c = self.counts
        line = (f"{c.new_tokens} tokens in {c.rounds} rounds, {c.wall_seconds:.2f} s: decode {self.decode_tok_s:.1f} "
                f"tok/s, end-to-end {self.end_to_end_tok_s:.1f} tok/s")
        if not c.drafts:
            return line + "; nothing drafted"
        cost = "n/a" if self.draft_cost is None else f"{self.draft_cost:.3f}"
        return (line + f"; draft acceptance rate {100 * (self.draft_acceptance_rate or 0):.0f}% ({c.accepted}/"
                f"{c.draft_tokens}), mean acceptance length {self.mean_acceptance_length:.2f}, "
                f"{self.tokens_per_verify:.2f} tokens per verify, c {cost}")

    def as_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "counts"}
        d["counts"] = self.counts.as_dict()
        return d


def metrics(items: Any) -> Metrics:
    """All the quantities of RoundRecords, GenerationResults or Counts, pooled first."""
    c = counts(items)
    return Metrics(counts=c, draft_acceptance_rate=draft_acceptance_rate(c),
                   mean_acceptance_length=mean_acceptance_length(c), acceptance_by_position=acceptance_by_position(c),
                   conditional_acceptance_by_position=conditional_acceptance_by_position(c),
                   tokens_per_verify=tokens_per_verify(c), mean_draft_length=mean_draft_length(c), alpha=alpha(c),
                   draft_cost=draft_cost(c), decode_tok_s=decode_tok_s(c), end_to_end_tok_s=end_to_end_tok_s(c))


GLOSSARY = {  # name -> (formula, unit): what docs/metrics.md, the views and notebook 00 print next to each value
    "draft acceptance rate": ("accepted draft tokens / draft tokens", "fraction"),
    "mean acceptance length": ("1 + accepted draft tokens / drafts", "tokens per drafted verify"),
    "acceptance by position": ("drafts whose position i was accepted / drafts", "fraction per position"),
    "conditional acceptance by position": ("accepted at i / drafts that reached i", "fraction per position"),
    "tokens per verify": ("new tokens / verify forwards", "tokens per target forward"),
    "mean draft length": ("draft tokens / rounds", "tokens"),
    "alpha": ("accepted / (accepted + rejections)", "i.i.d. acceptance rate"),
    "c (draft cost)": ("(draft s / draft tokens) / (verify s / rounds)", "verify forwards per draft token"),
    "decode tok/s": ("new tokens / (draft + verify s)", "tokens per second"),
    "end-to-end tok/s": ("new tokens / wall s, prefill included", "tokens per second"),
}


def table(m: Metrics) -> list[tuple[str, str, str]]:
    """(name, value, formula with this run's counts) for every quantity: the glossary applied to one run."""
    c = m.counts

    def f(x: float | None, fmt: str = ".3f") -> str:
        return "-" if x is None else format(x, fmt)

    by_pos = ", ".join(f"{a:.2f}" for a in m.acceptance_by_position)
    cond = ", ".join(f(a, ".2f") for a in m.conditional_acceptance_by_position)
    drafted, verify = c.draft_seconds + c.verify_seconds, c.verify_seconds
    return [
        ("draft acceptance rate", f(m.draft_acceptance_rate), f"{c.accepted} / {c.draft_tokens}"),
        ("mean acceptance length", f(m.mean_acceptance_length, ".2f"), f"1 + {c.accepted} / {c.drafts}"),
        ("acceptance by position", by_pos or "-", f"accepted per position {list(c.accepted_per_pos)} / {c.drafts}"),
        ("conditional acceptance by position", cond or "-",
         f"accepted per position / reached {list(c.verified_per_pos)}"),
        ("tokens per verify", f(m.tokens_per_verify, ".2f"), f"{c.new_tokens} / {c.rounds}"),
        ("mean draft length", f(m.mean_draft_length, ".2f"), f"{c.draft_tokens} / {c.rounds}"),
        ("alpha", f(m.alpha), f"{c.accepted} / ({c.accepted} + {c.rejections})"),
        ("c (draft cost)", f(m.draft_cost), f"({c.draft_seconds:.3f} s / {c.draft_tokens}) / ({verify:.3f} s / "
                                            f"{c.rounds})"),
        ("decode tok/s", f(m.decode_tok_s, ".1f"), f"{c.new_tokens} / {drafted:.3f} s"),
        ("end-to-end tok/s", f(m.end_to_end_tok_s, ".1f"), f"{c.new_tokens} / {c.wall_seconds:.3f} s"),
    ]


def verify_cost_free_drafts(c: Counts, one_token_seconds: float) -> float | None:
    """T(k+1)/T(1), verify over one token, from a run whose drafting costs nothing (llama.cpp's synthetic acceptance
    on n-gram drafts): a round with a draft of k tokens costs T(k+1) and a round without one T(1), so
    T(k+1) = (verify seconds - (rounds - drafts) T(1)) / drafts. ``one_token_seconds`` is T(1) from plain decoding
    of the same engine in the same run (its verify seconds / new tokens). Unit: one-token forwards."""
    if not c.drafts or one_token_seconds <= 0 or c.verify_seconds <= 0:
        return None
    return (c.verify_seconds - (c.rounds - c.drafts) * one_token_seconds) / c.drafts / one_token_seconds


def from_engine_counters(drafts: int, draft_tokens: int, accepted: int, accepted_per_pos: Sequence[int] = (),
                         new_tokens: int = 0, wall_seconds: float = 0.0, runs: int = 0,
                         decode_seconds: float = 0.0) -> Counts:
    """Counts from a serving engine's counters (vLLM / llama.cpp names). With ``new_tokens`` known, the verify steps
    follow: each step emits one token of the target's own plus the drafts it accepted, so rounds = new tokens -
    accepted (a step cut short at the end of a request makes this a bound within one step per request). The other
    labkit-only counters (rejections, reach per position, draft time) stay 0: the servers do not expose them.
    ``decode_seconds`` (the server's own decoding time, prefill excluded) is counted as verify time, so decode tok/s
    means what it means for labkit."""
    return Counts(drafts=drafts, draft_tokens=draft_tokens, accepted=accepted,
                  accepted_per_pos=tuple(int(x) for x in accepted_per_pos), new_tokens=new_tokens,
                  rounds=max(0, new_tokens - accepted) if new_tokens else 0, verify_seconds=decode_seconds,
                  wall_seconds=wall_seconds, runs=runs)
