"""Plain records of what the engine did: one RoundRecord per verify round, and the GenerationResult."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

from labkit.core.metrics import Metrics, metrics


@dataclass(frozen=True)


class KVTrace:
    """KV cache length (tokens) at the four moments of a round."""

    before: int
    after_draft: int
    after_verify: int
    after_rollback: int

    @property
    def reused(self) -> int:
        """Positions already cached when the round started."""
        return self.before

    @property
    def computed(self) -> int:
        """Positions computed during the round (draft or verify)."""
        return self.after_verify - self.before

    @property
    def discarded(self) -> int:
        """Positions computed and then rolled back (rejected drafts)."""
        return self.after_verify - self.after_rollback


@dataclass(frozen=True)


class RoundRecord:
    index: int
    context_len: int  # committed tokens (prompt + generated) when the round started
    drafted: list[int]
    p: list[float]  # target probability of each drafted token (warped; softmax at T=1 in greedy)
    q: list[float]  # drafter probability of each drafted token (1.0 for deterministic proposals)
    u: list[float]  # uniform draws of the acceptance test (sampling only)
    margin: list[float]  # greedy: target top-1 logit minus the drafted token's logit
    accepted: int
    rejected_at: int | None  # index into `drafted` of the first rejection; None if all accepted
    next_token: int  # the replacement (after a rejection) or the bonus token (after all accepted)
    next_kind: str  # "replacement" | "bonus" | "plain" (nothing was drafted)
    emitted: list[int]  # tokens committed this round (cut at EOS / max_new_tokens)
    target_kv: KVTrace
    drafter_kv: KVTrace | None
    draft_seconds: float
    verify_seconds: float
    finished: str | None = None  # "eos" | "length" when the round ended generation
    reused_target_state: int = 0  # target KV positions a drafter read instead of recomputing (MTP)
    k_requested: int = 0  # draft tokens asked of the drafter this round (len(drafted) may be fewer)
    draft_reason: str = ""  # why the round drafted as many tokens as it did (the draft-length policy's words)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass


class GenerationResult:
    prompt_ids: list[int]
    token_ids: list[int]  # new tokens only
    text: str | None
    rounds: list[RoundRecord]
    seconds: float
    prefill_seconds: float
    config: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def stats(self) -> Metrics:
        """Every quantity of labkit.core.metrics for this generation (glossary: docs/metrics.md)."""
        return metrics(self)

    def to_dataframe(self, per: str = "round"):
        """One row per round (``per="round"``) or per drafted token (``per="token"``)."""
        import pandas as pd

        if per == "round":
            rows = []
            for r in self.rounds:
                d = r.as_dict()
                for who in ("target_kv", "drafter_kv"):
                    kv = d.pop(who) or {}
                    for key, v in kv.items():
                        d[f"{who}_{key}"] = v
                d["n_drafted"] = len(r.drafted)
                d["n_emitted"] = len(r.emitted)
                rows.append(d)
            return pd.DataFrame(rows)
        if per == "token":
            rows = []
            for r in self.rounds:
                for i, tok in enumerate(r.drafted):
                    rows.append({
                        "round": r.index, "position": i, "token": tok, "p": r.p[i], "q": r.q[i],
                        "u": r.u[i] if r.u else None, "margin": r.margin[i] if r.margin else None,
                        "accepted": i < r.accepted,
                        "verdict": "accepted" if i < r.accepted else ("rejected" if i == r.accepted else "unverified"),
                    })
            return pd.DataFrame(rows)
        raise ValueError(f"per: must be 'round' or 'token', got {per!r}")
