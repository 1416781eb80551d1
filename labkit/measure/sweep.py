"""The one sweep runner: configurations side by side over the same prompts, repeats, medians, rows.

``run_side_by_side`` is the loop every measurement in labkit goes through (the bench, ``labkit demo``, the notebooks'
comparisons and live sweeps, the MTP evaluation): each configuration is an engine (labkit.engines.base.Engine), the
configurations run in a shuffled order per prompt so machine noise hits them alike, and each run is timed (wall and
CPU). ``run_sweep`` is the labkit case: plain decoding + drafters x k as LabkitEngines, summarized into one row per
configuration.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from labkit.core import metrics
from labkit.core.records import GenerationResult
from labkit.engines.base import Engine
from labkit.measure.text import repetition
from labkit.measure.timing import time_call


def run_side_by_side(engines: Mapping[str, Engine], prompts: Mapping[str, Sequence[Any]], max_new_tokens: int,
                     repeats: int = 1, seed: int = 0, shuffle: bool = True, warmup_tokens: int = 8,
                     device: torch.device | str = "cpu",
                     on_run: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Every engine on every prompt (``{category: prompts}``), ``repeats`` times; one record per run.

    Each engine runs once first on a short output (first-call costs stay out of the timings). A record holds
    config, category, prompt (index), repeat, seconds, cpu_seconds, tokens and result (the engine's EngineRun;
    labkit's rounds in ``result.generation``); ``on_run`` sees each one.
    """
    dev = torch.device(device)
    jobs = [(c, i, p) for c, ps in prompts.items() for i, p in enumerate(ps)]
    if warmup_tokens:
        for engine in engines.values():
            engine.run(jobs[0][2], min(warmup_tokens, max_new_tokens))
    rng = random.Random(seed)
    records = []
    for rep in range(repeats):
        for cat, i, prompt in jobs:
            order = list(engines)
            if shuffle:
                rng.shuffle(order)
            for name in order:
                c0 = time.process_time()  # CPU time too: on a shared machine it barely sees other processes
                secs, run = time_call(lambda n=name, p=prompt: engines[n].run(p, max_new_tokens), dev)
                rec = {"config": name, "category": cat, "prompt": i, "repeat": rep, "seconds": secs,
                       "cpu_seconds": time.process_time() - c0, "tokens": list(run.tokens or []), "result": run}
                records.append(rec)
                if on_run is not None:
                    on_run(rec)
    return records


def labkit_engines(target: Any, configs: Mapping[str, tuple[Any, Any]], hooks: Sequence[Callable] = (),
                   **gen: Any) -> dict[str, Engine]:
    """{label: LabkitEngine} for ``{label: (drafter or None, k)}`` (k: an int, "auto" or a draft-length policy);
    ``gen`` goes to ``generate`` (temperature, seed...). Runs stop at EOS, as ``generate`` does by default."""
    from labkit.engines.local import LabkitEngine

    gen = {"eos_token_id": "default", **gen}
    return {label: LabkitEngine(target, d, k, gen=gen, hooks=list(hooks)) for label, (d, k) in configs.items()}


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
              own_ks: Mapping[str, Sequence[Any]] | None = None, **gen: Any) -> list[dict[str, Any]]:
    """Plain decoding and each drafter x draft length on the same prompts, side by side; one row per configuration.

    ``drafters`` maps a name to a drafter, or to None for plain decoding (k = 0). ``ks`` holds ints and draft-length
    policies (labkit.core.draft_length, or "auto"); a policy's row has k = its k_max and policy = its repr (None
    for a fixed k). Speedups divide by the plain configuration's speed, or by ``base`` (results measured earlier)
    when there is none. Rows: drafter, k, policy, decode_tok_s (median over repeats of decode tokens/s pooled over
    prompts), speedup, and the quantities of labkit.core.metrics by their glossary names (see ``sweep_point``),
    repetition, results. ``own_ks``: draft lengths for some drafters instead of ``ks`` (a hybrid whose lookup drafts
    long, next to drafters at k = 4), still measured side by side with the rest.
    """
    own = {name: _draft_lengths(v) for name, v in (own_ks or {}).items()}
    if unknown := set(own) - set(drafters):
        raise ValueError(f"own_ks: no drafter named {', '.join(sorted(unknown))}")
    lengths = _draft_lengths(ks)
    configs = {f"{name}/k=0" if d is None else f"{name}/{label}": (name, (0, 0) if d is None else kh)
               for name, d in drafters.items()
               for label, kh in ({"k=0": None} if d is None else own.get(name, lengths)).items()}
    engines = labkit_engines(target, {label: (drafters[name], how) for label, (name, (_, how)) in configs.items()},
                             hooks, **gen)
    records = run_side_by_side(engines, {"": list(prompts)}, max_new_tokens, repeats, seed, shuffle,
                               8 if warmup else 0, getattr(target, "device", "cpu"), on_run)
    runs = {label: [[r["result"].generation for r in records if r["config"] == label and r["repeat"] == rep]
                    for rep in range(repeats)] for label in configs}
    plain = [label for label, (_, (k, _)) in configs.items() if k == 0]
    base_runs = runs[plain[0]] if plain else base
    return [{"drafter": name, **sweep_point(k, runs[label], base_runs),
             "policy": None if isinstance(how, int) else repr(how),
             "results": [r for rs in runs[label] for r in rs]} for label, (name, (k, how)) in configs.items()]


# ----------------------------------------------------------------------------------------------- summarizing


def _per_repeat(runs: Sequence[Any] | None) -> list[list[GenerationResult]]:
    """Runs grouped by repeat: a flat list of results is one repeat."""
    if not runs:
        return []
    return [list(r) for r in runs] if not isinstance(runs[0], GenerationResult) else [list(runs)]


def sweep_point(k: int, runs: Sequence[Any], base: Sequence[Any] | None) -> dict[str, Any]:
    """One configuration's row: its labkit.core.metrics pooled over every run, decode tok/s as the median over
    repeats (each repeat pooled over the prompts), and the speedup over plain decoding's median on the same prompts.

    ``runs`` and ``base`` are results, or lists of results per repeat.
    """
    reps, base_reps = _per_repeat(runs), _per_repeat(base)
    flat = [r for rs in reps for r in rs]
    m = metrics.metrics(flat)
    per_rep = [metrics.decode_tok_s(metrics.counts(rs)) for rs in reps]
    tps = metrics.median_over(per_rep)
    base_tps = metrics.median_over(metrics.decode_tok_s(metrics.counts(rs)) for rs in base_reps)
    return {"k": k, "decode_tok_s": tps, "speedup": metrics.speedup(tps, base_tps),
            "speed_spread": metrics.spread(per_rep),
            "tokens_per_verify": m.tokens_per_verify, "mean_draft_length": m.mean_draft_length,
            "mean_acceptance_length": m.mean_acceptance_length, "draft_acceptance_rate": m.draft_acceptance_rate,
            "acceptance_by_position": m.acceptance_by_position, "alpha": m.alpha, "draft_cost": m.draft_cost,
            "repetition": statistics.fmean(repetition(r.prompt_ids, r.token_ids) for r in flat)}


def compare(target: Any, drafters: dict[str, Any], prompts: Sequence[str], k: int = 4, max_new_tokens: int = 48,
            own_k: Mapping[str, int] | None = None, **gen: Any) -> list[dict[str, Any]]:
    """Each drafter (None = plain) at one k (``own_k``: another for some) on the same prompts: run_sweep's rows
    without the k and policy."""
    rows = run_sweep(target, drafters, [k], prompts, max_new_tokens=max_new_tokens,
                     own_ks={name: [v] for name, v in (own_k or {}).items()}, **gen)
    return [{key: v for key, v in r.items() if key not in ("k", "policy")} for r in rows]
