"""`labkit bench`: labkit's drafters x k x prompt categories, side by side with transformers' ``generate``.

Every configuration runs on the same prompts (token ids, tokenized once) with the same token budget (EOS ignored,
so every run emits exactly ``max_new_tokens``), through ``labkit.measure.sweep.run_side_by_side``: configurations in
a shuffled order per prompt, so machine noise hits them alike; speeds are medians over repeats, and every row also
carries its ratio to transformers' greedy ``generate`` measured in the same run, on the same category.

With ``--temperature T`` every labkit configuration also runs under sampling (seeded; T, top-k, top-p as given),
and a sampled row's ``ratio_vs_plain`` divides by labkit's plain *sampled* decoding at the same settings. Every row
carries ``repetition``: the share of generated 4-grams already seen in prompt + output, where prompt lookup wins.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from labkit.core import metrics
from labkit.engines.local import HF_MODES
from labkit.measure import machine, theory
from labkit.measure.prompts import CATEGORIES, prompt_set
from labkit.measure.sweep import run_side_by_side
from labkit.measure.text import repetition
from labkit.measure.timing import weight_bytes

DEFAULT_KS = (0, 1, 2, 3, 4, 6, 8, 12, 16)
LABKIT_DRAFTERS = ("ngram", "early-exit", "mtp", "hybrid")
POLICIES = ("auto", "heuristic", "confidence", "survival")  # dynamic draft length: labkit.core.draft_length
ENGINES = ("labkit", "transformers", "llama.cpp")
# llama.cpp's drafters: ngram-mod is its --spec-default (its own draft lengths); the others run at the bench's ks
LLAMA_METHODS = ("plain", "ngram-mod", "ngram-simple", "ngram-map-k")
# the labkit.core.metrics quantities a row carries when the engine reports its rounds (glossary: docs/metrics.md)
ROUND_METRICS = ("tokens_per_verify", "mean_draft_length", "mean_acceptance_length", "draft_acceptance_rate",
                 "acceptance_by_position", "conditional_acceptance_by_position", "alpha", "draft_cost")


@dataclass(frozen=True)
class Method:
    """One configuration: an engine, a drafting method and a draft length k (0 = plain decoding)."""

    engine: str  # "labkit" | "transformers" | "llama.cpp"
    name: str  # labkit: "plain" or a drafter spec; transformers: one of HF_MODES
    k: int = 0
    decoding: str = "greedy"  # or "sampled": the settings' temperature, top-k, top-p (labkit only)
    policy: str = ""  # "" = k every round; else one of POLICIES, drafting at most k per round

    @property
    def key(self) -> str:
        return (f"{self.engine}/{self.name}/k={self.k}" + (f"/{self.policy}" if self.policy else "")
                + ("" if self.decoding == "greedy" else f"/{self.decoding}"))


HF_GREEDY = Method("transformers", "greedy", 0)
LABKIT_PLAIN = Method("labkit", "plain", 0)


@dataclass
class BenchSettings:
    model: str = "gemma3-270m"
    dtype: str | None = None
    device: str | None = None
    drafters: tuple[str, ...] = LABKIT_DRAFTERS
    ks: tuple[int, ...] = DEFAULT_KS
    policies: tuple[str, ...] = ("auto",)  # per labkit drafter, at most its largest k per round
    hf_modes: tuple[str, ...] = HF_MODES
    categories: tuple[str, ...] = CATEGORIES
    prompts_per_category: int = 5
    max_new_tokens: int = 128
    repeats: int = 3
    early_exit_layers: int = 6  # the same L for labkit's early-exit drafter and transformers' assistant_early_exit
    assistant: str | None = None  # draft model (HF id or folder): HF assistant_model and labkit draft-model
    threads: str | int = "auto"
    cache: str = "dynamic"  # labkit's KV cache: "dynamic" or "static" (preallocated)
    compile_mode: str | None = None  # torch.compile labkit's per-round forward (implies the static cache)
    quick: bool = False  # tiny random models, a few tokens: seconds, for tests
    seed: int = 0
    temperature: float = 0.0  # > 0: labkit configurations run sampled too, next to greedy
    top_k: int | None = None
    top_p: float | None = None
    progress: bool = True
    engines: tuple[str, ...] = ("labkit", "transformers")  # + "llama.cpp": llama-server on the same GGUF
    llama_server: str | None = None  # the llama-server binary (default: $LABKIT_LLAMA_SERVER or labkit's build)
    llama_methods: tuple[str, ...] = LLAMA_METHODS

    def sampling(self) -> str:
        """The sampled settings in words, e.g. "T=1 top-k=64 top-p=0.95"."""
        return " ".join([f"T={self.temperature:g}"] + ([f"top-k={self.top_k}"] if self.top_k else [])
                        + ([f"top-p={self.top_p:g}"] if self.top_p else []))


@dataclass
class Workload:
    """Everything the runs share: the target, the prompts as ids, the optional assistant, the runners."""

    target: Any
    prompts: dict[str, list[torch.Tensor]]
    assistant: Any = None  # a transformers model usable as assistant_model (None when the pair does not allow one)
    runners: dict[str, Callable[[torch.Tensor, int], tuple[list[int], Any]]] = field(default_factory=dict)
    verify_cost: dict[int, float] | None = None  # T(k+1)/T(1) measured before the runs: the "auto" policy uses it
    skipped: dict[str, str] = field(default_factory=dict)  # method or drafter -> why it was not run
    engines: list[Any] = field(default_factory=list)  # servers started for the run: always closed at its end


# ----------------------------------------------------------------------------------------------- setting up


def quick_settings(**overrides: Any) -> BenchSettings:
    """Tiny random models, short runs: the whole bench in seconds (tests, smoke checks)."""
    base = dict(model="tiny", dtype="fp32", device="cpu",
                drafters=("ngram", "early-exit:1", "draft-model", "mtp", "hybrid"),
                ks=(0, 2, 4), prompts_per_category=1, max_new_tokens=16, repeats=2, early_exit_layers=1,
                threads=1, quick=True, progress=False)
    base.update(overrides)
    return BenchSettings(**base)


def set_threads(threads: str | int, probe: Callable[[], float] | None = None) -> int:
    """Set torch's threads by labkit's one thread policy (labkit.threads): a number, or "auto"."""
    from labkit.threads import set_threads as policy

    return policy(threads, probe)


def load_workload(s: BenchSettings) -> Workload:
    """The target (embedded, any model, or tiny random ones in quick mode) and the prompts as token ids."""
    if s.quick:  # tiny_pair's shapes, with a sliding window long enough for the static cache
        from labkit.models.load import Target
        from labkit.models.tiny import tiny_model

        t = tiny_model(64, layers=3, hidden=48, seed=s.seed, sliding_window=128)
        d = tiny_model(64, layers=1, hidden=32, seed=s.seed + 1000, sliding_window=128)
        target, assistant = Target(t, None, "tiny-target"), d
    else:
        from labkit.models.load import load_target

        target = load_target(s.model, dtype=s.dtype, device=s.device, progress=s.progress)
        assistant = _load_assistant(s.assistant, target) if s.assistant else None
    return Workload(target, _prompt_ids(target, s), assistant)


def _load_assistant(name: str, target: Any) -> Any:
    from labkit.models.load import load_target

    return load_target(name, dtype=target.dtype, device=target.device, progress=False).model


def _prompt_ids(target: Any, s: BenchSettings) -> dict[str, list[torch.Tensor]]:
    """Tokenize each prompt once; tiny models get seeded random ids with a repeated stretch (so lookup can hit)."""
    out: dict[str, list[torch.Tensor]] = {}
    dev = target.device
    if target.tokenizer is None:
        g = torch.Generator().manual_seed(s.seed)
        for c in s.categories:
            ids = [torch.randint(3, target.vocab_size, (8,), generator=g) for _ in range(s.prompts_per_category)]
            out[c] = [torch.cat([x, x, x[:4]]).to(dev) for x in ids]
        return out
    texts = prompt_set()
    for c in s.categories:
        if c not in texts:
            raise ValueError(f"categories: unknown {c!r}; allowed: {', '.join(CATEGORIES)}")
        chosen = texts[c][: s.prompts_per_category]
        out[c] = [torch.tensor(target.tokenizer(p)["input_ids"], dtype=torch.long, device=dev) for p in chosen]
    return out


def plan(s: BenchSettings, w: Workload) -> list[Method]:
    """Every configuration to run: labkit plain + drafters x k, transformers greedy + assisted modes x k.

    A spec may carry its own ks after "@" (``early-exit@1,2``): slow methods need not sweep every k.
    """
    decodings = ["greedy", "sampled"] if s.temperature > 0 else ["greedy"]
    methods = [Method("labkit", "plain", 0, d) for d in decodings] if 0 in s.ks else []
    for spec in s.drafters:
        name, ks = _spec_ks(spec, s.ks)
        methods += [Method("labkit", name, k, d) for d in decodings for k in ks]
        if ks:
            methods += [Method("labkit", name, max(ks), d, policy) for d in decodings for policy in s.policies]
    for spec in s.hf_modes:
        mode, ks = _spec_ks(spec, s.ks)
        if mode == "greedy":
            methods.insert(0, HF_GREEDY)
        elif mode == "assistant" and w.assistant is None:
            w.skipped["transformers/assistant"] = "no assistant model for this target (pass --assistant ID)"
        else:
            methods += [Method("transformers", mode, k) for k in ks]
    if HF_GREEDY not in methods:
        methods.insert(0, HF_GREEDY)  # the baseline every ratio is taken against
    if "llama.cpp" in s.engines:
        for name in s.llama_methods:
            ks = [0] if name in ("plain", "ngram-mod") else [k for k in s.ks if k > 0]
            if name.startswith("synthetic-"):
                from labkit.engines.llama_cpp import synthetic_alpha

                synthetic_alpha(name)  # a bad alpha fails here, before any server starts
            methods += [Method("llama.cpp", name, k) for k in ks]
    return methods


def _spec_ks(spec: str, default: tuple[int, ...]) -> tuple[str, list[int]]:
    name, _, ks = spec.partition("@")
    return name, [k for k in (_csv_ints(ks) if ks else default) if k > 0]


def build_runners(s: BenchSettings, w: Workload, methods: list[Method]) -> list[Method]:
    """A callable per method; methods whose drafter cannot be built here are dropped (and listed in ``skipped``)."""
    drafters: dict[str, Any] = {}
    kept = []
    for m in methods:
        if m.engine == "labkit" and m.name != "plain" and m.name not in drafters:
            try:
                drafters[m.name] = _make_drafter(m.name, s, w)
            except Exception as e:  # noqa: BLE001  (a drafter that cannot load is reported, the rest still runs)
                drafters[m.name] = None
                w.skipped[f"labkit/{m.name}"] = f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
        if m.engine == "labkit" and m.name != "plain" and drafters[m.name] is None:
            continue
        if m.engine == "llama.cpp":
            w.runners[m.key] = _llama_runner(s, w, m)
        else:
            w.runners[m.key] = (_labkit_runner(s, w, drafters.get(m.name), m) if m.engine == "labkit"
                                else _hf_runner(s, w, m))
        kept.append(m)
    return kept


def _llama_runner(s: BenchSettings, w: Workload, m: Method) -> Callable:
    """A llama-server for this method (started now, on the embedded GGUF, kept for the whole run)."""
    from labkit.engines.llama_cpp import LlamaCppEngine
    from labkit.models.embedded import gguf_path

    if s.model != "gemma3-270m":
        raise ValueError("engines: llama.cpp runs the embedded GGUF only (--model gemma3-270m)")
    eng = LlamaCppEngine(gguf_path(), m.name, m.k, binary=s.llama_server, threads=torch.get_num_threads())
    w.engines.append(eng)

    def run(ids: torch.Tensor, n: int) -> tuple[list[int], Any]:
        out = eng.run(ids.tolist(), n)
        return list(out.tokens or []), out

    return run


def _make_drafter(spec: str, s: BenchSettings, w: Workload) -> Any:
    from labkit.drafters import DraftModelDrafter, make_drafter

    if spec in ("draft-model", "assistant"):  # the same model transformers gets as assistant_model
        if w.assistant is None:
            raise ValueError("no draft model for this target (pass --assistant ID)")
        if type(w.assistant).__name__.startswith("Gemma4"):
            from labkit.drafters.gemma4_assistant import Gemma4AssistantDrafter

            return Gemma4AssistantDrafter(w.assistant)
        return DraftModelDrafter(w.assistant)
    if spec == "early-exit":
        spec = f"early-exit:{s.early_exit_layers}"
    # no shipped head for tiny models: a random one (a head from a file is loaded as given)
    if spec.partition(":")[0] in ("mtp", "hybrid") and s.quick and ".safetensors" not in spec:
        from labkit.drafters import hybrid_from_spec
        from labkit.drafters.mtp.drafter import MTPDrafter

        head = MTPDrafter.random_init(w.target, layers=1, seed=s.seed)
        arg = spec.partition(":")[2]
        return head if spec.startswith("mtp") else hybrid_from_spec(head, arg, w.verify_cost)
    return make_drafter(spec, w.target, verify_cost=w.verify_cost)


def _labkit_runner(s: BenchSettings, w: Workload, drafter: Any, m: Method) -> Callable:
    from labkit.engines.local import LabkitEngine

    reads_cache = drafter is not None and drafter.needs_hidden  # mtp reads the target's cache: dynamic only
    cache = "dynamic" if reads_cache else ("static" if s.compile_mode else s.cache)
    k: Any = make_policy(m.policy, m.k, w.verify_cost) if m.policy else m.k
    gen = dict(temperature=s.temperature, top_k=s.top_k, top_p=s.top_p) if m.decoding == "sampled" else {}
    eng = LabkitEngine(w.target, drafter, k, gen={"seed": s.seed, **gen}, cache=cache,
                       compile_mode=None if reads_cache else s.compile_mode)

    def run(ids: torch.Tensor, n: int) -> tuple[list[int], Any]:
        out = eng.run(ids, n)
        return out.tokens, out.raw["result"]

    return run


def make_policy(name: str, k_max: int, verify_cost: dict[int, float] | None = None) -> Any:
    """A dynamic draft-length policy by name, drafting at most ``k_max`` tokens a round."""
    from labkit.core.draft_length import ConfidenceStop, CostModel, Heuristic, SurvivalStop

    if name == "auto":  # the cost model, fed this machine's measured verify cost
        return CostModel(k_max=k_max, verify_cost=verify_cost)
    if name == "heuristic":
        return Heuristic(k_start=min(4, k_max), k_max=k_max)
    if name == "confidence":
        return ConfidenceStop(k_max=k_max)
    if name == "survival":  # confidence-aware: survival x q against this machine's marginal verify cost
        return SurvivalStop(k_max=k_max, verify_cost=verify_cost)
    raise ValueError(f"policies: unknown policy {name!r}; choose from {', '.join(POLICIES)}")


def _hf_runner(s: BenchSettings, w: Workload, m: Method) -> Callable:
    from labkit.engines.local import TransformersEngine

    eng = TransformersEngine(w.target, m.name, m.k, assistant=w.assistant, early_exit_layers=s.early_exit_layers,
                             max_new_tokens=s.max_new_tokens)

    def run(ids: torch.Tensor, n: int) -> tuple[list[int], Any]:
        return eng.run(ids, n).tokens, None

    return run


# ----------------------------------------------------------------------------------------------- measuring


def _run_record(rec: dict[str, Any], prompt_ids: torch.Tensor) -> dict[str, Any]:
    """A sweep record as the bench keeps it: labkit.core.metrics Counts instead of the result, so runs pool and
    serialize. The wall time is the one taken around the call, the same clock for every engine."""
    tokens, res = rec["tokens"], rec["result"]
    c = (res.counts if hasattr(res, "counts") and isinstance(res.counts, metrics.Counts)  # a served engine's run
         else metrics.counts(res) if res is not None else metrics.Counts(new_tokens=len(tokens), runs=1))
    c = dataclasses.replace(c, new_tokens=len(tokens), wall_seconds=rec["seconds"])
    served = hasattr(res, "counts") and isinstance(res.counts, metrics.Counts)  # the work ran in another process
    # llama.cpp's per-request figures against its /metrics deltas for the same request
    raw = getattr(res, "raw", {}) if served else {}
    agree = (None if "draft_n" not in raw else
             int(raw["draft_n"]) == c.draft_tokens and int(raw.get("draft_n_accepted", -1)) == c.accepted)
    return {"method": rec["config"], "category": rec["category"], "prompt": rec["prompt"],
            "repeat": rec["repeat"], "prompt_ids": prompt_ids.tolist(), "seconds": rec["seconds"],
            "cpu_seconds": None if served else rec["cpu_seconds"],
            "new_tokens": len(tokens), "tokens": tokens, "counts": c, "has_rounds": res is not None,
            "counters_agree": agree,
            "repetition": repetition(prompt_ids.tolist(), tokens)}


def measure(s: BenchSettings, w: Workload, methods: list[Method]) -> list[dict[str, Any]]:
    """Warm every method up once, then run repeats x prompts with the methods shuffled per prompt."""
    from tqdm.auto import tqdm

    jobs = sum(len(v) for v in w.prompts.values())
    bar = tqdm(total=len(methods) * s.repeats * jobs, desc="bench", disable=not s.progress)

    def done(rec: dict[str, Any]) -> None:
        bar.set_postfix_str(f"{rec['repeat'] + 1}/{s.repeats} {rec['category']} {rec['config']}")
        bar.update()

    records = run_side_by_side({m.key: w.runners[m.key] for m in methods}, w.prompts, s.max_new_tokens, s.repeats,
                               s.seed, warmup_tokens=8, device=w.target.device, on_run=done)
    bar.close()
    return [_run_record(r, w.prompts[r["category"]][r["prompt"]]) for r in records]


# ----------------------------------------------------------------------------------------------- summarizing


def _pool(runs: list[dict]) -> metrics.Counts:
    return metrics.counts(r["counts"] for r in runs)


def _tok_s(runs: list[dict], clock: str = "seconds") -> float | None:
    """End-to-end tok/s (labkit.core.metrics) of each repeat pooled over its prompts, median over repeats; ``clock``
    "cpu_seconds" divides by this process's CPU time instead of the wall time."""
    per_rep: dict[int, list[dict]] = {}
    for r in runs:
        per_rep.setdefault(r["repeat"], []).append(r)
    if any(r.get(clock) is None for r in runs):
        return None
    return metrics.median_over(metrics.end_to_end_tok_s(_pool(v), sum(x[clock] for x in v))
                               for v in per_rep.values())


def _mean(runs: list[dict], key: str) -> float | None:
    vals = [r[key] for r in runs if r.get(key) is not None]
    return statistics.fmean(vals) if vals else None


def _same_as_greedy(runs: list[dict], greedy: dict[tuple, list[int]]) -> float:
    first = [r for r in runs if r["repeat"] == 0]
    return sum(r["tokens"] == greedy.get((r["category"], r["prompt"])) for r in first) / len(first)


def _row(m: Method, cat: str, runs: list[dict], greedy: dict[tuple, list[int]]) -> dict[str, Any]:
    """One (method, category) row: labkit.core.metrics of the pooled counts (engines that expose no rounds, like
    transformers, get None for the acceptance quantities), end-to-end tok/s as the median over repeats."""
    q = metrics.metrics(_pool(runs))
    rounds = all(r["has_rounds"] for r in runs) and bool(runs)
    return {"engine": m.engine, "method": m.name, "k": m.k, "decoding": m.decoding, "policy": m.policy,
            "category": cat, "end_to_end_tok_s": _tok_s(runs), "tok_s_cpu": _tok_s(runs, "cpu_seconds"),
            "runs": len(runs), "new_tokens": q.counts.new_tokens,
            **{name: getattr(q, name) if rounds else None for name in ROUND_METRICS},
            "repetition": _mean(runs, "repetition"), "same_as_hf_greedy": _same_as_greedy(runs, greedy)}


def summarize(runs: list[dict], methods: list[Method], categories: list[str]) -> list[dict[str, Any]]:
    """One row per (method, category) and per method over "all" categories, with ratios to transformers' greedy.

    The "all" row's ratio is the mean of the per-category ratios (each category weighs the same).
    """
    greedy = {(r["category"], r["prompt"]): r["tokens"] for r in runs
              if r["method"] == HF_GREEDY.key and r["repeat"] == 0}
    rows = []
    for m in methods:
        mine = [r for r in runs if r["method"] == m.key]
        per_cat = [_row(m, c, [r for r in mine if r["category"] == c], greedy) for c in categories]
        rows += per_cat
        rows.append(_row(m, "all", mine, greedy))
    for speed, ratio in (("end_to_end_tok_s", "ratio_vs_hf_greedy"), ("tok_s_cpu", "ratio_cpu_vs_hf_greedy")):
        _ratios(rows, speed, ratio, lambda r: r["engine"] == "transformers" and r["method"] == "greedy")
    for decoding in dict.fromkeys(r.get("decoding", "greedy") for r in rows):
        _ratios(rows, "end_to_end_tok_s", "ratio_vs_plain", lambda r, d=decoding: r["engine"] == "labkit"
                and r["method"] == "plain" and r.get("decoding", "greedy") == d,
                only=lambda r, d=decoding: r.get("decoding", "greedy") == d and r["engine"] != "llama.cpp")
    # llama.cpp against its own plain decoding, and every row against llama.cpp's plain decoding
    llama_plain = lambda r: r["engine"] == "llama.cpp" and r["method"] == "plain"  # noqa: E731
    _ratios(rows, "end_to_end_tok_s", "ratio_vs_plain", llama_plain, only=lambda r: r["engine"] == "llama.cpp")
    _ratios(rows, "end_to_end_tok_s", "ratio_vs_llama_plain", llama_plain)
    return rows


def _ratios(rows: list[dict], speed: str, ratio: str, is_base: Callable[[dict], bool],
            only: Callable[[dict], bool] = lambda r: True) -> None:
    """Each row's ``speed`` over the base row's of its category; the "all" row takes the mean of its categories'."""
    base = {r["category"]: r[speed] for r in rows if is_base(r)}
    if not base:
        return
    rows = [r for r in rows if only(r)]
    for r in rows:
        if r["category"] != "all":
            r[ratio] = r[speed] / base[r["category"]] if r[speed] and base[r["category"]] else None
    for r in rows:
        if r["category"] == "all":
            cats = [x[ratio] for x in rows if x["category"] != "all" and _same_method(x, r)]
            r[ratio] = sum(cats) / len(cats) if None not in cats else None


def _same_method(a: dict, b: dict) -> bool:
    return all(a.get(f) == b.get(f) for f in ("engine", "method", "k", "decoding", "policy"))


def theory_curves(rows: list[dict], k_max: int = 16, verify_cost: dict[int, float] | None = None
                  ) -> list[dict[str, Any]]:
    """Per labkit drafter: alpha and c (labkit.core.metrics, median over its fixed-k rows), the speedup
    labkit.measure.theory predicts for k = 0..k_max on this run's verify-cost curve (None: a free verify), and what
    was measured."""
    # alpha^i holds for greedy acceptance at one k: sampled rows and dynamic-k rows stay out
    rows = [r for r in rows if r.get("decoding", "greedy") == "greedy" and not r.get("policy")]
    plain = {r["category"]: r["end_to_end_tok_s"] for r in rows if r["engine"] == "labkit" and r["method"] == "plain"}
    out = []
    for name in dict.fromkeys(r["method"] for r in rows if r["engine"] == "labkit" and r["k"] > 0):
        mine = [r for r in rows if r["engine"] == "labkit" and r["method"] == name and r["category"] == "all"]
        alphas = [r["alpha"] for r in mine if r["alpha"] is not None]
        costs = [r["draft_cost"] for r in mine if r["draft_cost"] is not None]
        if not alphas:
            continue
        a, c = statistics.median(alphas), statistics.median(costs) if costs else 0.0
        out.append({"drafter": name, "alpha": a, "c": c,
                    "curve": [{"k": k, "speedup": theory.speedup(a, k, c, theory.verify_at(verify_cost, k))}
                              for k in range(k_max + 1)],
                    "best_k": theory.best_k(a, c, k_max, theory.curve_to(verify_cost, k_max))[0],
                    "measured": [{"k": r["k"], "speedup": r["end_to_end_tok_s"] / plain["all"]} for r in mine]
                    if plain else []})
    return out


# ----------------------------------------------------------------------------------------------- roofline


def counter_check(runs: list[dict]) -> dict[str, int] | None:
    """How many served requests' own figures (llama.cpp's timings.draft_n / draft_n_accepted) equal the /metrics
    counter deltas of the same request; None when no engine reported both."""
    checked = [r["counters_agree"] for r in runs if r.get("counters_agree") is not None]
    return {"requests": len(checked), "agree": sum(checked)} if checked else None


def add_free_draft_verify_cost(rows: list[dict], runs: list[dict], methods: list[Method]) -> None:
    """llama.cpp's T(k+1)/T(1) from its synthetic-acceptance rows (labkit.core.metrics.verify_cost_free_drafts),
    with T(1) from llama.cpp plain in the same run (its decoding seconds per token, pooled per category)."""
    plain = [r for r in runs if r["method"] == Method("llama.cpp", "plain", 0).key]
    for r in rows:
        if r["engine"] != "llama.cpp" or not r["method"].startswith("synthetic-"):
            continue
        cat = [x for x in plain if r["category"] in ("all", x["category"])]
        base = _pool(cat)
        mine = [x for x in runs if x["method"] == Method("llama.cpp", r["method"], r["k"]).key
                and r["category"] in ("all", x["category"])]
        tok_s = metrics.decode_tok_s(base) if base.new_tokens else 0.0
        t1 = 1.0 / tok_s if tok_s else 0.0  # plain decoding drafts nothing: its decode time is all verify
        r["verify_cost"] = metrics.verify_cost_free_drafts(_pool(mine), t1) if mine else None


def add_roofline(rows: list[dict], wbytes: int) -> None:
    """Weight GB/s each row implies: tokens/s x bytes of weights a token costs when read once per token
    (speculation can exceed the copy rate: one weight read serves several tokens); and actual target forwards/s."""
    for r in rows:
        r["weight_gbps"] = r["end_to_end_tok_s"] * wbytes / 1e9
        tpf = r["tokens_per_verify"] or (1.0 if r["k"] == 0 else None)  # plain decoding: 1 token per forward
        r["tokens_per_verify"] = tpf
        r["target_forward_gbps"] = r["end_to_end_tok_s"] / tpf * wbytes / 1e9 if tpf else None


# ----------------------------------------------------------------------------------------------- entry points


def run_bench(s: BenchSettings, out_dir: str | Path | None = None, workload: Workload | None = None
              ) -> dict[str, Any]:
    """Run the whole bench (on ``workload`` when given, else the one ``s`` names); write bench.json, bench.csv and
    bench.html to ``out_dir`` when given."""
    w = workload or load_workload(s)
    first = next(iter(w.prompts.values()))[0]
    threads = set_threads(s.threads, _forward_probe(w.target, first))
    # measured before the runs: the header prints it and the "auto" draft-length policy decides with it
    ref = machine.reference(w.target, rounds=4 if s.quick else machine.ROUNDS, copy_megabytes=16 if s.quick else 256)
    w.verify_cost = ref.curve
    try:
        methods = build_runners(s, w, plan(s, w))
        runs = measure(s, w, methods)
    finally:  # servers never outlive the bench, whatever ended it
        for eng in w.engines:
            eng.close()
    cats = list(w.prompts)
    rows = summarize(runs, methods, cats)
    wbytes = weight_bytes(w.target.model)
    add_roofline(rows, wbytes)
    add_free_draft_verify_cost(rows, runs, methods)
    meta = _meta(s, w, threads, wbytes, ref)
    meta["counter_check"] = counter_check(runs)
    if w.target.weight_format == "int8" and w.target.tokenizer is not None:
        meta["quality_vs_bf16"] = quality_vs_bf16(w.target, runs)
    kept = [{**{k: v for k, v in r.items() if k not in ("tokens", "counts", "prompt_ids")},
             "counts": r["counts"].as_dict()} for r in runs]
    result = {"meta": meta, "rows": rows, "theory": theory_curves(rows, max(s.ks), w.verify_cost),
              "skipped": w.skipped, "runs": kept}
    if out_dir is not None:
        from labkit.measure.report import write_all

        result["files"] = write_all(result, out_dir)
    return result


def quality_vs_bf16(target: Any, runs: list[dict]) -> dict[str, float]:
    """How far an int8 target is from its bf16 original, teacher-forced on the bench's own text (each prompt with
    the int8 target's greedy continuation from the plain runs): mean KL(bf16 || int8) in nats, its 90th percentile,
    and the share of positions whose argmax agrees (labkit.lab.quantize.divergence)."""
    from labkit.lab.quantize import divergence
    from labkit.models.load import load_target

    bf16 = load_target(target.name, dtype="bf16", device=target.device, progress=False)
    texts, seen = [], set()
    for r in runs:
        key = (r["category"], r["prompt"])
        if r["method"] == LABKIT_PLAIN.key and key not in seen:
            seen.add(key)
            texts.append(r["prompt_ids"] + list(r["tokens"]))
    return divergence(bf16, {"int8": target}, texts)["int8"]


def _forward_probe(target: Any, ids: torch.Tensor) -> Callable[[], float]:
    """Seconds of a few one-token target forwards after a short prefill (for the threads choice)."""
    from labkit.core.kvcache import crop, new_cache

    @torch.inference_mode()
    def probe() -> float:
        cache = new_cache(target.model)
        target.model(input_ids=ids[None, :-1], cache=cache, use_cache=True, logits_to_keep=1)
        t0 = time.perf_counter()
        for _ in range(3):
            target.model(input_ids=ids[None, -1:], cache=cache, use_cache=True)
            crop(cache, ids.numel() - 1)
        return time.perf_counter() - t0

    return probe


def _meta(s: BenchSettings, w: Workload, threads: int, wbytes: int, ref: machine.Reference) -> dict[str, Any]:
    import transformers

    from labkit.threads import load_average

    dev = w.target.device
    return {"settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(s).items()},
            "model": w.target.name, "dtype": w.target.weight_format, "device": str(dev), "threads": threads,
            "cpu_count": os.cpu_count(), "machine": platform.processor() or platform.machine(),
            "torch": torch.__version__, "transformers": transformers.__version__,
            "weight_bytes": wbytes, "copy_gbps": ref.copy_gb_s, "verify_cost": ref.curve,
            "machine_reference": ref.as_dict(), "load_average": load_average(),
            "prompts": {c: [int(x.numel()) for x in v] for c, v in w.prompts.items()},
            "baseline": HF_GREEDY.key, "when": time.strftime("%Y-%m-%d %H:%M:%S")}


def _csv_ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def _csv_strs(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def _csv_engines(text: str) -> tuple[str, ...]:
    engines = _csv_strs(text)
    if bad := [e for e in engines if e not in ENGINES]:
        raise argparse.ArgumentTypeError(f"unknown engine {', '.join(bad)}; choose from {', '.join(ENGINES)}")
    if "transformers" not in engines:
        engines = ("transformers", *engines)  # its greedy generate is the baseline every table starts from
    return engines


def _csv_policies(text: str) -> tuple[str, ...]:
    return () if text.strip() == "none" else _csv_strs(text)


def _csv_specs(text: str) -> tuple[str, ...]:
    """Specs with their own ks: "ngram@4,8,16,mtp@2,4" -> ("ngram@4,8,16", "mtp@2,4")."""
    out: list[str] = []
    for part in _csv_strs(text):
        if part.isdigit():
            if not out or "@" not in out[-1]:
                raise argparse.ArgumentTypeError(f"{text!r}: a bare number {part} must follow a spec@k list")
            out[-1] += "," + part
        else:
            out.append(part)
    return tuple(out)


def settings_from_args(a: argparse.Namespace) -> BenchSettings:
    if a.quick:
        over = {"progress": not a.no_progress, "cache": a.cache, "compile_mode": a.compile,
                "temperature": a.temperature, "top_k": a.top_k, "top_p": a.top_p}
        for name in ("ks", "policies", "repeats", "max_new_tokens", "drafters", "hf_modes", "categories"):
            v = getattr(a, name)
            if v is not None:
                over[name] = v
        return quick_settings(**over)
    s = BenchSettings(model=a.model, dtype=a.dtype, device=a.device, assistant=a.assistant, threads=a.threads,
                      early_exit_layers=a.early_exit_layers, prompts_per_category=a.prompts_per_category,
                      cache=a.cache, compile_mode=a.compile, seed=a.seed, progress=not a.no_progress,
                      temperature=a.temperature, top_k=a.top_k, top_p=a.top_p)
    for name in ("ks", "policies", "repeats", "max_new_tokens", "drafters", "hf_modes", "categories", "engines"):
        v = getattr(a, name)
        if v is not None:
            setattr(s, name, v)
    s.llama_server = a.llama_server
    if a.llama_methods is not None:
        s.llama_methods = a.llama_methods
    return s


def cmd_bench(a: argparse.Namespace) -> int:
    from transformers.utils import logging as hf_logging

    from labkit.measure.report import format_table

    s = settings_from_args(a)
    if any(not 0 <= k <= 32 for k in s.ks):
        raise ValueError(f"ks: every k must be in 0..32, got {list(s.ks)}")
    if unknown := [p for p in s.policies if p not in POLICIES]:
        raise ValueError(f"policies: unknown {', '.join(unknown)}; choose from {', '.join(POLICIES)} (or none)")
    if s.temperature < 0 or (s.top_k is not None and s.top_k < 1) or (s.top_p is not None and not 0 < s.top_p <= 1):
        raise ValueError("sampling: need --temperature >= 0, --top-k >= 1, --top-p in (0, 1] (Gemma: 1.0, 64, 0.95)")
    hf_logging.set_verbosity_error()  # transformers' assisted modes warn about their own internal calls
    result = run_bench(s, a.out)
    print(format_table(result))
    for f in result.get("files", []):
        print(f"wrote {f}")
    return 0


def register_cli(sub: Any) -> None:
    if "bench" in sub.choices:  # cli.main() may run more than once per process (tests): register once
        return
    p = sub.add_parser("bench", help="drafters x k x categories against transformers' generate: table, JSON, CSV, "
                                     "HTML")
    p.add_argument("--model", default="gemma3-270m", help="embedded name, Hugging Face id or local folder")
    p.add_argument("--dtype", default=None, choices=["bf16", "fp32", "int8"],
                   help="bf16 (default), fp32, or int8 weight-only (its greedy agreement and KL against bf16 are "
                        "measured on the bench prompts and printed)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    p.add_argument("--drafters", type=_csv_specs, default=None,
                   help="labkit drafter specs, comma-separated (default: ngram,early-exit,mtp; also draft-model, "
                        "synthetic:A, early-exit:L); a spec may carry its own ks: ngram@4,8,16,mtp@2,4")
    p.add_argument("--ks", type=_csv_ints, default=None, help="draft lengths, e.g. 0,1,2,4,8,16 (0 = plain)")
    p.add_argument("--policies", type=_csv_policies, default=None,
                   help="dynamic draft length per labkit drafter, at most its largest k: auto (cost model with the "
                        "measured verify cost; default), heuristic, confidence, survival (stop once survival x q no "
                        "longer pays for the measured marginal verify cost), or none")
    p.add_argument("--hf-modes", type=_csv_specs, default=None,
                   help="transformers modes: greedy,prompt-lookup,early-exit,assistant (own ks as for --drafters)")
    p.add_argument("--categories", type=_csv_strs, default=None, help=f"subset of {','.join(CATEGORIES)}")
    p.add_argument("--prompts-per-category", type=int, default=5)
    p.add_argument("--max-new-tokens", type=int, default=None, help="token budget per run (default 128)")
    p.add_argument("--repeats", type=int, default=None, help="repeats per configuration (default 3; medians)")
    p.add_argument("--early-exit-layers", type=int, default=6)
    p.add_argument("--assistant", default=None, help="draft model for transformers' assistant_model and labkit's "
                                                     "draft-model drafter")
    p.add_argument("--threads", default="auto", help="torch threads: a number, or auto (probe 1 vs all cores)")
    p.add_argument("--cache", default="dynamic", choices=("dynamic", "static"), help="labkit's KV cache")
    p.add_argument("--compile", default=None, metavar="MODE",
                   help="torch.compile labkit's per-round forward (default, reduce-overhead, ...; static cache); "
                        "compilation happens in the warm-up, outside the timings")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--temperature", type=float, default=0.0,
                   help="> 0: labkit configurations also run sampled (seeded), next to greedy; Gemma uses 1.0")
    p.add_argument("--top-k", type=int, default=None, help="sampling: keep the k likeliest tokens (Gemma: 64)")
    p.add_argument("--top-p", type=float, default=None, help="sampling: nucleus mass (Gemma: 0.95)")
    p.add_argument("--out", default="bench-out", help="folder for bench.json, bench.csv, bench.html")
    p.add_argument("--engines", type=_csv_engines, default=None,
                   help="labkit,transformers (default), and llama.cpp: llama-server on the same GGUF, plain, "
                        "ngram-mod (--spec-default) and ngram-simple / ngram-map-k at the bench's ks")
    p.add_argument("--llama-methods", type=_csv_strs, default=None,
                   help=f"llama.cpp configurations (default {','.join(LLAMA_METHODS)}); synthetic-ALPHA (e.g. "
                        "synthetic-0.8) adds llama.cpp's timing-only --spec-synth-rates at ALPHA^(j+1) by position "
                        "for each k: its speed against acceptance and k, and its verify cost")
    p.add_argument("--llama-server", default=None, metavar="PATH",
                   help="the llama-server binary (default: $LABKIT_LLAMA_SERVER, else `labkit llama-server build`)")
    p.add_argument("--quick", action="store_true", help="tiny random models, 16 tokens: a smoke run in seconds")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_bench)
