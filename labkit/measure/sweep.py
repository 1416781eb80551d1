"""Speed of drafters against plain decoding: tokens/s, speedup per k, alpha and c estimated from runs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from labkit.core.records import GenerationResult


def decode_seconds(result: GenerationResult) -> float:
    """Draft + verify time of every round: decoding without the prefill (which spec decoding does not change)."""
    return sum(r.draft_seconds + r.verify_seconds for r in result.rounds)


def decode_tps(results: GenerationResult | Sequence[GenerationResult]) -> float:
    """Decoding tokens per second, pooled over results."""
    rs = [results] if isinstance(results, GenerationResult) else list(results)
    secs = sum(decode_seconds(r) for r in rs)
    return sum(len(r.token_ids) for r in rs) / secs if secs > 0 else 0.0


def estimate_alpha_c(results: Sequence[GenerationResult]) -> tuple[float | None, float | None]:
    """Pooled acceptance rate alpha and draft/verify cost ratio c.

    alpha is the maximum-likelihood rate of i.i.d. acceptance: every drafted position the verifier looked at is
    a trial; it succeeds unless it is the round's first rejection (accepted / (accepted + rejections)).
    c is seconds per drafted token over seconds per verify forward.
    """
    acc = sum(r.accepted for res in results for r in res.rounds)
    rej = sum(r.rejected_at is not None for res in results for r in res.rounds)
    drafted = sum(len(r.drafted) for res in results for r in res.rounds)
    n = sum(len(res.rounds) for res in results)
    draft_s = sum(r.draft_seconds for res in results for r in res.rounds)
    verify_s = sum(r.verify_seconds for res in results for r in res.rounds)
    alpha = acc / (acc + rej) if acc + rej else None
    c = (draft_s / drafted) / (verify_s / n) if drafted and n and verify_s > 0 else None
    return alpha, c


def sweep_point(k: int, runs: Sequence[GenerationResult], base: Sequence[GenerationResult]) -> dict[str, Any]:
    """One point of a speed-vs-k sweep: speedup over plain decoding (k = 0) on the same prompts."""
    tps, base_tps = decode_tps(runs), decode_tps(base)
    alpha, c = estimate_alpha_c(runs) if k > 0 else (None, None)
    rounds = sum(len(r.rounds) for r in runs)
    return {"k": k, "tok_per_s": tps, "speedup": tps / base_tps if base_tps else float("nan"),
            "tokens_per_verify": sum(len(r.token_ids) for r in runs) / rounds if rounds else 0.0,
            "alpha": alpha, "c": c}


def compare(target: Any, drafters: dict[str, Any], prompts: Sequence[str], k: int = 4, max_new_tokens: int = 48,
            **gen: Any) -> list[dict[str, Any]]:
    """Each drafter (None = plain) on the same prompts: tokens/verify, acceptance, c, decode tok/s, speedup."""
    from labkit.core.engine import SpeculativeDecoder

    SpeculativeDecoder(target, None).generate(prompts[0], max_new_tokens=4)  # warm-up: first calls are slower
    rows, base = [], None
    for name, drafter in drafters.items():
        dec = SpeculativeDecoder(target, drafter, k=k if drafter is not None else 0)
        runs = [dec.generate(p, max_new_tokens=max_new_tokens, **gen) for p in prompts]
        alpha, c = estimate_alpha_c(runs) if drafter is not None else (None, None)
        tps = decode_tps(runs)
        base = tps if drafter is None else base
        n_rounds = sum(len(r.rounds) for r in runs)
        rows.append({"drafter": name, "tokens_per_verify": sum(len(r.token_ids) for r in runs) / n_rounds,
                     "acceptance": alpha, "c": c, "tok_per_s": tps, "speedup": tps / base if base else None,
                     "results": runs})
    return rows
