"""The one sweep runner: configurations side by side over the same prompts, repeats, medians, rows.

``run_side_by_side`` is the loop every measurement in labkit goes through (the bench, ``labkit demo``, the notebooks'
comparisons and live sweeps, the MTP evaluation): each configuration is a runner, the configurations run in a
shuffled order per prompt so machine noise hits them alike, and each run is timed (wall and CPU). ``run_sweep`` is
the labkit case: plain decoding + drafters x k, summarized into one row per configuration.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from labkit.core.records import GenerationResult
from labkit.measure.text import repetition
from labkit.measure.timing import time_call

# A configuration: (prompt, max_new_tokens) -> (new token ids, the labkit result or None for another engine)
Runner = Callable[[Any, int], tuple[list[int], GenerationResult | None]]


def run_side_by_side(runners: Mapping[str, Runner], prompts: Mapping[str, Sequence[Any]], max_new_tokens: int,
                     repeats: int = 1, seed: int = 0, shuffle: bool = True, warmup_tokens: int = 8,
                     device: torch.device | str = "cpu",
                     on_run: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Every runner on every prompt (``{category: prompts}``), ``repeats`` times; one record per run.

    Each runner is called once first on a short output (first-call costs stay out of the timings). A record holds
    config, category, prompt (index), repeat, seconds, cpu_seconds, tokens and result; ``on_run`` sees each one.
    """
    dev = torch.device(device)
    jobs = [(c, i, p) for c, ps in prompts.items() for i, p in enumerate(ps)]
    if warmup_tokens:
        for run in runners.values():
            run(jobs[0][2], min(warmup_tokens, max_new_tokens))
    rng = random.Random(seed)
    records = []
    for rep in range(repeats):
        for cat, i, prompt in jobs:
            order = list(runners)
            if shuffle:
                rng.shuffle(order)
            for name in order:
                c0 = time.process_time()  # CPU time too: on a shared machine it barely sees other processes
                secs, (tokens, res) = time_call(lambda n=name, p=prompt: runners[n](p, max_new_tokens), dev)
                rec = {"config": name, "category": cat, "prompt": i, "repeat": rep, "seconds": secs,
                       "cpu_seconds": time.process_time() - c0, "tokens": tokens, "result": res}
                records.append(rec)
                if on_run is not None:
                    on_run(rec)
    return records


def labkit_runner(target: Any, drafter: Any, k: Any, hooks: Sequence[Callable] = (), **gen: Any) -> Runner:
    """A runner for ``SpeculativeDecoder(target, drafter, k)`` (k: an int, "auto" or a draft-length policy);
    ``gen`` goes to ``generate`` (temperature, seed...)."""
    from labkit.core.engine import SpeculativeDecoder

    dec = SpeculativeDecoder(target, drafter, k=k if drafter is not None else 0, hooks=list(hooks))

    def run(prompt: Any, n: int) -> tuple[list[int], GenerationResult]:
        res = dec.generate(prompt, max_new_tokens=n, **gen)
        return res.token_ids, res

    return run


def _draft_lengths(ks: Sequence[Any]) -> dict[str, tuple[int, Any]]:
    """{label: (k, what the decoder gets)} for ints k > 0 and policies ("auto" or objects; FixedK counts as its k)."""
    from labkit.core.draft_length import FixedK, as_policy

    out: dict[str, tuple[int, Any]] = {}
    for k in ks:
        policy = as_policy(k)  # a one-line error for anything that is neither
        if isinstance(policy, FixedK):
            if policy.k_max > 0:
                out[f"k={policy.k_max}"] = (policy.k_max, policy.k_max)
        else:
            label = repr(policy)
            while label in out:  # two policies with one repr (e.g. different verify curves) stay two rows
                label += "'"
            out[label] = (policy.k_max, policy)
    return out


def run_sweep(target: Any, drafters: Mapping[str, Any], ks: Sequence[Any], prompts: Sequence[Any],
              max_new_tokens: int = 48, repeats: int = 1, seed: int = 0, shuffle: bool = True,
              base: Sequence[GenerationResult] | None = None, hooks: Sequence[Callable] = (),
              on_run: Callable[[dict[str, Any]], None] | None = None, warmup: bool = True,
              **gen: Any) -> list[dict[str, Any]]:
    """Plain decoding and each drafter x draft length on the same prompts, side by side; one row per configuration.

    ``drafters`` maps a name to a drafter, or to None for plain decoding (k = 0). ``ks`` holds ints and draft-length
    policies (labkit.core.draft_length, or "auto"); a policy's row has k = its k_max and policy = its repr (None
    for a fixed k). Speedups divide by the plain configuration's speed, or by ``base`` (results measured earlier)
    when there is none. Rows: drafter, k, policy, tok_per_s (median over repeats of decode tokens/s pooled over
    prompts), speedup, tokens_per_verify, mean_k (tokens drafted per round), acceptance (alpha, see
    ``estimate_alpha_c``), acceptance_rate, c, repetition, results.
    """
    lengths = _draft_lengths(ks)
    configs = {f"{name}/k=0" if d is None else f"{name}/{label}": (name, (0, 0) if d is None else lengths[label])
               for name, d in drafters.items() for label in (["k=0"] if d is None else lengths)}
    runners = {label: labkit_runner(target, drafters[name], how, hooks, **gen)
               for label, (name, (_, how)) in configs.items()}
    records = run_side_by_side(runners, {"": list(prompts)}, max_new_tokens, repeats, seed, shuffle,
                               8 if warmup else 0, getattr(target, "device", "cpu"), on_run)
    runs = {label: [[r["result"] for r in records if r["config"] == label and r["repeat"] == rep]
                    for rep in range(repeats)] for label in configs}
    plain = [label for label, (_, (k, _)) in configs.items() if k == 0]
    base_runs = runs[plain[0]] if plain else base
    return [{"drafter": name, **sweep_point(k, runs[label], base_runs),
             "policy": None if isinstance(how, int) else repr(how),
             "results": [r for rs in runs[label] for r in rs]} for label, (name, (k, how)) in configs.items()]


# ----------------------------------------------------------------------------------------------- summarizing


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


def _per_repeat(runs: Sequence[Any] | None) -> list[list[GenerationResult]]:
    """Runs grouped by repeat: a flat list of results is one repeat."""
    if not runs:
        return []
    return [list(r) for r in runs] if not isinstance(runs[0], GenerationResult) else [list(runs)]


def sweep_point(k: int, runs: Sequence[Any], base: Sequence[Any] | None) -> dict[str, Any]:
    """One configuration's row: speed (median over repeats) and its ratio to plain decoding on the same prompts.

    ``runs`` and ``base`` are results, or lists of results per repeat.
    """
    reps, base_reps = _per_repeat(runs), _per_repeat(base)
    flat = [r for rs in reps for r in rs]
    tps = statistics.median(decode_tps(rs) for rs in reps)
    base_tps = statistics.median(decode_tps(rs) for rs in base_reps) if base_reps else 0.0
    alpha, c = estimate_alpha_c(flat) if k > 0 else (None, None)
    rounds = sum(len(r.rounds) for r in flat)
    drafted = sum(r.stats.drafted for r in flat)
    return {"k": k, "tok_per_s": tps, "speedup": tps / base_tps if base_tps else float("nan"),
            "tokens_per_verify": sum(len(r.token_ids) for r in flat) / rounds if rounds else 0.0,
            "mean_k": drafted / rounds if rounds else 0.0,
            "alpha": alpha, "acceptance_rate": sum(r.stats.accepted for r in flat) / drafted if drafted else None,
            "c": c, "repetition": statistics.fmean(repetition(r.prompt_ids, r.token_ids) for r in flat)}


def compare(target: Any, drafters: dict[str, Any], prompts: Sequence[str], k: int = 4, max_new_tokens: int = 48,
            **gen: Any) -> list[dict[str, Any]]:
    """Each drafter (None = plain) on the same prompts: tokens/verify, acceptance, c, decode tok/s, speedup."""
    rows = run_sweep(target, drafters, [k], prompts, max_new_tokens=max_new_tokens, **gen)
    return [{"drafter": r["drafter"], "tokens_per_verify": r["tokens_per_verify"], "acceptance": r["alpha"],
             "c": r["c"], "tok_per_s": r["tok_per_s"], "speedup": r["speedup"], "repetition": r["repetition"],
             "results": r["results"]} for r in rows]
