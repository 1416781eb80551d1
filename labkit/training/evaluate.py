"""How the shipped MTP drafter does on the embedded default: ``labkit eval-mtp``.

Greedy, 128 new tokens, every prompt of ``labkit.measure.prompts.prompt_set()`` (none was trained on), plain
decoding ``SpeculativeDecoder(target, None)`` run right before the drafter on the same prompt (through
``labkit.measure.sweep.run_sweep``) so machine noise hits both alike. Reports per k: mean accepted length (tokens
per verify), speedup in decode tokens/s over plain (mean over prompts and median per category), the measured cost
ratio c, and how many outputs equal plain decoding (bf16 near-ties can differ; fp32 never does, see tests).
"""

from __future__ import annotations

import time
from typing import Any

import torch

from labkit import load_target
from labkit.core import metrics
from labkit.drafters.mtp.drafter import MTPDrafter
from labkit.measure.prompts import prompt_set


def measure(target: Any, drafter: Any, ks: list[int], max_new_tokens: int = 128, per_category: int | None = None,
            progress: bool = True) -> list[dict[str, Any]]:
    """One row per (prompt, k); k = 0 is plain decoding, run right before the drafter on the same prompt."""
    from tqdm.auto import tqdm

    from labkit.measure.sweep import run_sweep

    prompts = [(c, i, p) for c, ps in prompt_set().items() for i, p in enumerate(ps[:per_category])]
    rows = []
    for n, (cat, i, prompt) in enumerate(tqdm(prompts, desc="mtp-eval", disable=not progress)):
        sweep = run_sweep(target, {"plain": None, "mtp": drafter}, ks, [prompt], max_new_tokens=max_new_tokens,
                          shuffle=False, warmup=n == 0)
        plain = sweep[0]["results"][0]
        for r in sweep:
            out = r["results"][0]
            c = metrics.counts(out)
            row = {"category": cat, "prompt": i, "k": r["k"], "decode_tok_s": r["decode_tok_s"],
                   "speedup": r["speedup"], "repetition": r["repetition"], "counts": c.as_dict()}
            if r["k"]:
                row.update(mean_acceptance_length=r["mean_acceptance_length"], draft_cost=r["draft_cost"],
                           acceptance_by_position=r["acceptance_by_position"],
                           draft_ms_per_token=1000 * c.draft_seconds / max(1, c.draft_tokens),
                           verify_ms_per_round=1000 * c.verify_seconds / max(1, c.rounds),
                           same_as_plain=out.token_ids == plain.token_ids)
            rows.append(row)
    return rows


def _pooled(rows: list[dict[str, Any]]) -> metrics.Metrics:
    return metrics.metrics(metrics.Counts(**{k: tuple(v) if isinstance(v, list) else v for k, v in r["counts"].items()})
                           for r in rows)


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per k: labkit.core.metrics pooled over every prompt (and per category), speedup as pooled decode tok/s over
    plain's pooled decode tok/s on the same prompts."""
    plain = _pooled([r for r in rows if r["k"] == 0])
    out = {}
    for k in sorted({r["k"] for r in rows if r["k"]}):
        rs = [r for r in rows if r["k"] == k]
        cats = sorted({r["category"] for r in rs})
        m = _pooled(rs)

        def by_cat(c: str, what: str, rs: list = rs) -> float | None:
            mine = _pooled([r for r in rs if r["category"] == c])
            if what == "speedup":
                return metrics.speedup(mine.decode_tok_s,
                                       _pooled([r for r in rows if r["k"] == 0 and r["category"] == c]).decode_tok_s)
            return getattr(mine, what)

        out[k] = {
            "mean_acceptance_length": m.mean_acceptance_length,
            "acceptance_by_position": m.acceptance_by_position,
            "speedup": metrics.speedup(m.decode_tok_s, plain.decode_tok_s),
            "speedup_by_category": {c: by_cat(c, "speedup") for c in cats},
            "mean_acceptance_length_by_category": {c: by_cat(c, "mean_acceptance_length") for c in cats},
            "draft_cost": m.draft_cost,
            "draft_ms_per_token": 1000 * m.counts.draft_seconds / max(1, m.counts.draft_tokens),
            "verify_ms_per_round": 1000 * m.counts.verify_seconds / max(1, m.counts.rounds),
            "same_as_plain": f"{sum(r['same_as_plain'] for r in rs)}/{len(rs)}",
        }
    return {"plain_decode_tok_s": plain.decode_tok_s, "by_k": out}


def evaluate_drafter(weights: str | None = None, ks: list[int] | tuple[int, ...] = (2, 3, 4, 6),
                     max_new_tokens: int = 128, per_category: int | None = None, dtype: str = "bf16",
                     threads: int | None = None, progress: bool = True) -> dict[str, Any]:
    """An MTP drafter (``weights``, default the shipped one) on the embedded gemma3-270m: {"summary", "rows"}."""
    if threads:
        torch.set_num_threads(threads)
    target = load_target("gemma3-270m", dtype=dtype, device="cpu")
    drafter = MTPDrafter.load(weights) if weights else MTPDrafter.pretrained("gemma3-270m")
    t0 = time.perf_counter()
    rows = measure(target, drafter, list(ks), max_new_tokens, per_category, progress=progress)
    summary = {**summarize(rows), "seconds": round(time.perf_counter() - t0, 1), "threads": torch.get_num_threads(),
               "dtype": dtype, "max_new_tokens": max_new_tokens}
    return {"summary": summary, "rows": rows}
