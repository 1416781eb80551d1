"""Token-level views of a result: spans (text + verdict) shared by the terminal, the HTML export and widgets."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from labkit.core.records import GenerationResult, RoundRecord

KINDS = ("accepted", "rejected", "replacement", "bonus", "plain")


@dataclass


class Span:
    text: str
    token: int
    kind: str  # one of KINDS; "rejected" spans were drafted but are not part of the output
    round: int
    position: int | None  # index in the round's draft (None for replacement / bonus / plain)
    p: float | None = None
    q: float | None = None
    u: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _piece(tokenizer: Any, tok: int) -> str:
    if tokenizer is None:
        return f"<{tok}>"
    return tokenizer.decode([tok], skip_special_tokens=False)


def round_spans(r: RoundRecord, tokenizer: Any = None) -> list[Span]:
    """The spans of one round, in reading order: kept drafts, the rejected draft, then replacement or bonus."""
    spans: list[Span] = []
    plain = not r.drafted
    n_kept = len(r.emitted) - 1 if len(r.emitted) <= r.accepted else r.accepted
    for i in range(min(r.accepted, len(r.emitted))):
        tok = r.drafted[i]
        spans.append(Span(_piece(tokenizer, tok), tok, "accepted", r.index, i, r.p[i], r.q[i],
                          r.u[i] if r.u else None))
    if r.rejected_at is not None and len(r.emitted) > n_kept:
        i = r.rejected_at
        tok = r.drafted[i]
        spans.append(Span(_piece(tokenizer, tok), tok, "rejected", r.index, i, r.p[i], r.q[i],
                          r.u[i] if r.u else None))
    if len(r.emitted) > r.accepted:
        kind = "plain" if plain else r.next_kind
        spans.append(Span(_piece(tokenizer, r.next_token), r.next_token, kind, r.index, None))
    return spans


def token_spans(result: GenerationResult, tokenizer: Any = None) -> list[Span]:
    out: list[Span] = []
    for r in result.rounds:
        out.extend(round_spans(r, tokenizer))
    return out


_ANSI = {"accepted": "\x1b[32m", "rejected": "\x1b[9;31m", "replacement": "\x1b[33m", "bonus": "\x1b[36m",
         "plain": ""}


def ansi(spans: list[Span], color: bool = True) -> str:
    """Terminal text: accepted green, rejected red struck through, replacement yellow, bonus cyan."""
    if not color:
        return "".join(s.text for s in spans if s.kind != "rejected")
    return "".join(f"{_ANSI[s.kind]}{s.text}\x1b[0m" if _ANSI[s.kind] else s.text for s in spans)


LEGEND = "legend: \x1b[32maccepted\x1b[0m \x1b[9;31mrejected\x1b[0m \x1b[33mreplacement\x1b[0m \x1b[36mbonus\x1b[0m"
