"""Speed on the device: copy rate, the bench on a random pair with its bandwidth roofline, and the compile path.
Speed is reported, never asserted."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from labkit.checks.options import GpuCheckOptions
from labkit.checks.report import Report
from labkit.measure import theory

CATEGORIES = ("conversation", "code", "math")  # prompts are random ids here: three are enough for the table


def device_copy_gbps(device: torch.device, mbytes: int) -> float:
    import statistics

    from labkit.measure.timing import copy_rates

    return statistics.median(copy_rates(device, megabytes=mbytes)) / 1e9


def bench_table(rep: Report, args: GpuCheckOptions, target: Any, assistant: Any, device: torch.device) -> dict:
    """labkit.measure.bench on the random pair: plain, n-gram, synthetic, the Gemma 4 assistant, labkit's MTP head
    (random weights: its cost, not its acceptance), vs transformers greedy and assisted generation."""
    from labkit.measure.bench import BenchSettings, Workload, prompt_ids, run_bench
    from labkit.measure.report import format_table
    from labkit.models.load import Target

    ks = tuple(args.ks)
    drafted = ",".join(str(k) for k in ks if k)
    s = BenchSettings(model="random", device=str(device), drafters=("ngram", f"synthetic:0.8@{max(ks)}",
                      f"assistant@{drafted}", f"mtp@{drafted}"),
                      ks=ks, policies=(),  # fixed k only: its report compares k against k
                      hf_modes=("greedy", "prompt-lookup", f"assistant@{max(ks)}"), categories=CATEGORIES,
                      prompts_per_category=1, max_new_tokens=args.max_new_tokens, repeats=args.repeats,
                      threads=torch.get_num_threads(), progress=False,
                      quick=True)  # quick: "mtp" is a random head for this target (no shipped weights fit it)
    t = Target(target, None, f"random {args.size}")
    w = Workload(t, prompt_ids(t, s), assistant)
    result = run_bench(s, args.out, workload=w)
    print(format_table(result), flush=True)
    return result


def report_bandwidth(rep: Report, result: dict) -> None:
    meta = result["meta"]
    overall = [r for r in result["rows"] if r["category"] == "all"]
    plain = next(r for r in overall if r["method"] == "plain")
    gbps = plain["end_to_end_tok_s"] * meta["weight_bytes"] / 1e9
    rep.info("roofline: labkit plain decoding", f"{plain['end_to_end_tok_s']:.1f} tok/s x "
             f"{meta['weight_bytes'] / 1e6:.1f} MB "
             f"of weights read per token = {gbps:.1f} GB/s, {100 * gbps / meta['copy_gbps']:.0f}% of the measured "
             f"copy rate ({meta['copy_gbps']:.0f} GB/s, read + write)")
    rep.data["roofline"] = {"plain_tok_s": plain["end_to_end_tok_s"], "weight_bytes": meta["weight_bytes"],
                            "achieved_gbps": gbps, "copy_gbps": meta["copy_gbps"]}
    for r in overall:
        if r["method"] in ("plain", "greedy", "assistant", "mtp"):
            rep.info(f"{r['engine']} {r['method']} k={r['k']}", f"{r['end_to_end_tok_s']:.1f} tok/s, "
                     f"{r['ratio_vs_hf_greedy']:.2f}x transformers greedy" + (
                         f", {r['tokens_per_verify']:.2f} tokens/verify" if r["tokens_per_verify"] else ""))
    for c in result["theory"]:
        rep.info(f"theory for {c['drafter']}", f"alpha={c['alpha']:.2f}, c={c['c']:.3f} -> best k={c['best_k']}, "
                 f"{theory.best_k(c['alpha'], c['c'], 16)[1]:.2f}x over plain")
    syn = [r for r in overall if r["method"].startswith("synthetic")]
    for r in syn:  # acceptance is what the synthetic drafter was asked for (its oracle makes its timing meaningless)
        rep.check(f"synthetic drafter acceptance ~ alpha (k={r['k']})", abs(r["alpha"] - 0.8) < 0.15,
                  f"alpha={r['alpha']:.2f}")


def compile_path(rep: Report, args: GpuCheckOptions, target: Any, device: torch.device) -> None:
    """Plain decoding through labkit's static cache, eager vs compiled (CUDA graphs on GPU); same tokens?"""
    from labkit.core.engine import SpeculativeDecoder

    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, target.config.get_text_config().vocab_size, (24,), generator=g).to(device)
    n = args.max_new_tokens
    mode = args.compile_mode or ("reduce-overhead" if device.type == "cuda" else "default")
    runs: dict[str, list[float]] = {}
    outs = {}
    for label, cache, cm in [("eager dynamic", "dynamic", None), ("eager static", "static", None),
                             (f"compiled static ({mode})", "static", mode)]:
        dec = SpeculativeDecoder(target, None, k=0, cache=cache, compile_mode=cm)
        t0 = time.perf_counter()
        outs[label] = dec.generate(ids, max_new_tokens=n, eos_token_id=None).token_ids  # includes compilation
        rep.say(f"INFO {label}: first run {time.perf_counter() - t0:.1f}s")
        runs[label] = [_timed(lambda d=dec: d.generate(ids, max_new_tokens=n, eos_token_id=None), device)
                       for _ in range(args.repeats)]
    base = statistics.median(runs["eager dynamic"])
    for label, ts in runs.items():
        rep.info(f"plain, {label}", f"{n / statistics.median(ts):.1f} tok/s ({base / statistics.median(ts):.2f}x "
                 f"eager dynamic), same tokens as eager dynamic: {outs[label] == outs['eager dynamic']}")
    same = outs["eager static"] == outs["eager dynamic"]
    if next(target.parameters()).dtype == torch.float32:
        rep.check("static cache gives the dynamic cache's tokens", same)
    else:  # bf16: other attention shapes may flip near-ties; worth seeing, not a failure
        rep.info("static cache gives the dynamic cache's tokens (bf16)", str(same))


def _timed(fn: Callable[[], Any], device: torch.device) -> float:
    from labkit.measure.timing import time_call

    return time_call(fn, device)[0]
