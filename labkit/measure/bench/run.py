"""Running the bench: an engine per planned method, every run side by side through the one sweep runner, one
typed record per run, and ``run_bench``, which writes what it measured."""

from __future__ import annotations

import dataclasses
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from labkit.core import metrics
from labkit.measure import machine
from labkit.measure.bench.settings import HF_GREEDY, BenchSettings, Method, Workload, load_workload, plan
from labkit.measure.prompts import load_prompts
from labkit.measure.sweep import run_side_by_side
from labkit.measure.text import repetition


@dataclass
class RunRecord:
    """One run of one method on one prompt: its counters (labkit.core.metrics, pooled by the summary) and the wall
    time taken around the call, the same clock for every engine."""

    method: str  # Method.key
    category: str
    prompt: int  # index in its category
    repeat: int
    seconds: float
    cpu_seconds: float | None  # this process's CPU time; None when the work ran in another process (a server)
    new_tokens: int
    counts: metrics.Counts
    has_rounds: bool  # the engine reports drafting counters (transformers' generate does not)
    counters_agree: bool | None = None  # llama.cpp, vLLM: its per-request figures equal its /metrics deltas
    repetition: float | None = None  # share of generated 4-grams seen before (labkit.measure.text)
    tokens: list[int] = field(default_factory=list)  # kept in memory, not written
    prompt_ids: list[int] = field(default_factory=list)  # kept in memory, not written

    def as_dict(self) -> dict[str, Any]:
        """What bench.json keeps of a run: no token ids, the counts as a dict."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if f.name not in ("tokens", "prompt_ids", "counts")}
        return {**out, "counts": self.counts.as_dict()}


def set_threads(threads: str | int, probe: Callable[[], float] | None = None) -> int:
    """Set torch's threads by labkit's one thread policy (labkit.threads): a number, or "auto"."""
    from labkit.threads import set_threads as policy

    return policy(threads, probe)


def build_engines(s: BenchSettings, w: Workload, methods: list[Method]) -> list[Method]:
    """An engine per method (in ``w.engines``); methods whose drafter cannot be built are dropped (and listed in
    ``w.skipped``)."""
    drafters: dict[str, Any] = {}
    kept = []
    for m in methods:
        labkit_drafter = m.engine == "labkit" and m.name != "plain"
        if labkit_drafter and m.name not in drafters:
            try:
                drafters[m.name] = _drafter(m.name, s, w)
            except Exception as e:  # noqa: BLE001  (a drafter that cannot load is reported, the rest still runs)
                drafters[m.name] = None
                w.skipped[f"labkit/{m.name}"] = f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
        if labkit_drafter and drafters[m.name] is None:
            continue
        w.engines[m.key] = (_labkit_engine(s, w, drafters.get(m.name), m) if m.engine == "labkit"
                            else _llama_engine(s, m) if m.engine == "llama.cpp"
                            else _vllm_engine(s, m) if m.engine == "vllm" else _hf_engine(s, w, m))
        kept.append(m)
    return kept


def _drafter(name: str, s: BenchSettings, w: Workload) -> Any:
    """The drafter a spec names (labkit.drafters.make_drafter): a bare draft-model is the workload's assistant,
    a bare early-exit runs the settings' layers, and tiny models get a random MTP head (none is shipped for them)."""
    from labkit.core.drafter_spec import parse
    from labkit.drafters import make_drafter

    spec = parse(name)
    if spec.kind == "early-exit" and spec.layers is None:
        spec = dataclasses.replace(spec, layers=s.early_exit_layers)
    if spec.kind == "draft-model" and spec.model is None and w.assistant is None:
        raise ValueError("no draft model for this target (pass --assistant ID)")
    head = None
    if spec.kind in ("mtp", "hybrid") and s.quick and not spec.head_file:
        from labkit.drafters.mtp.drafter import MTPDrafter

        head = MTPDrafter.random_init(w.target, layers=1, seed=s.seed)
    return make_drafter(spec, w.target, verify_cost=w.verify_cost, draft_model=w.assistant, mtp_head=head)


def _labkit_engine(s: BenchSettings, w: Workload, drafter: Any, m: Method) -> Any:
    from labkit.core.draft_length import policy_from_name
    from labkit.engines.local import LabkitEngine

    reads_cache = drafter is not None and drafter.needs_hidden  # mtp reads the target's cache: dynamic only
    cache = "dynamic" if reads_cache else ("static" if s.compile_mode else s.cache)
    k: Any = policy_from_name(m.policy, m.k, w.verify_cost) if m.policy else m.k
    gen = dict(temperature=s.temperature, top_k=s.top_k, top_p=s.top_p) if m.decoding == "sampled" else {}
    return LabkitEngine(w.target, drafter, k, gen={"seed": s.seed, **gen}, cache=cache,
                        compile_mode=None if reads_cache else s.compile_mode)


def _hf_engine(s: BenchSettings, w: Workload, m: Method) -> Any:
    from labkit.engines.local import TransformersEngine

    return TransformersEngine(w.target, m.name, m.k, assistant=w.assistant, early_exit_layers=s.early_exit_layers,
                              max_new_tokens=s.max_new_tokens)


def _llama_engine(s: BenchSettings, m: Method) -> Any:
    """A llama-server for this method (started now, on the embedded GGUF, kept for the whole run)."""
    from labkit.engines.llama_cpp import LlamaCppEngine
    from labkit.models.embedded import gguf_path

    if s.model != "gemma3-270m":
        raise ValueError("engines: llama.cpp runs the embedded GGUF only (--model gemma3-270m)")
    return LlamaCppEngine(gguf_path(), m.name, m.k, binary=s.llama_server, threads=torch.get_num_threads())


def _vllm_engine(s: BenchSettings, m: Method) -> Any:
    """A vLLM server for this method (started now, on the embedded model as vLLM loads it, kept for the whole run),
    on as many threads as labkit's own loop."""
    from labkit.engines.vllm import VLLMEngine

    return VLLMEngine(f"{m.name}@{m.k}" if m.k else m.name, threads=torch.get_num_threads(), progress=s.progress)


def counters_agree(raw: dict[str, Any], c: metrics.Counts) -> bool | None:
    """Whether a served request's own figures equal the /metrics counter deltas taken around it (``c``):
    llama.cpp's ``timings.draft_n`` / ``draft_n_accepted``, vLLM's ``metrics.speculative_decoding``
    ``num_spec_steps`` / ``num_draft_tokens`` / ``num_accepted_draft_tokens``; None when the response has neither."""
    if "draft_n" in raw:
        return int(raw["draft_n"]) == c.draft_tokens and int(raw.get("draft_n_accepted", -1)) == c.accepted
    if "num_draft_tokens" in raw:
        return ((int(raw.get("num_spec_steps", -1)), int(raw["num_draft_tokens"]),
                 int(raw.get("num_accepted_draft_tokens", -1))) == (c.drafts, c.draft_tokens, c.accepted))
    return None


def run_record(rec: dict[str, Any], m: Method, prompt_ids: torch.Tensor) -> RunRecord:
    """A sweep record (labkit.measure.sweep.run_side_by_side) as the bench keeps it: the engine's counts with the
    tokens counted and the wall time taken around the call."""
    run, tokens = rec["result"], rec["tokens"]
    c = dataclasses.replace(run.counts, new_tokens=len(tokens), wall_seconds=rec["seconds"])
    agree = counters_agree(run.raw, c)  # a server's per-request figures against its /metrics deltas
    ids = prompt_ids.tolist()
    return RunRecord(m.key, rec["category"], rec["prompt"], rec["repeat"], rec["seconds"],
                     None if m.served else rec["cpu_seconds"], len(tokens), c, m.has_rounds, agree,
                     repetition(ids, tokens), list(tokens), ids)


def measure(s: BenchSettings, w: Workload, methods: list[Method]) -> list[RunRecord]:
    """Warm every method up once, then run repeats x prompts with the methods shuffled per prompt."""
    from tqdm.auto import tqdm

    jobs = sum(len(v) for v in w.prompts.values())
    bar = tqdm(total=len(methods) * s.repeats * jobs, desc="bench", disable=not s.progress)

    def done(rec: dict[str, Any]) -> None:
        bar.set_postfix_str(f"{rec['repeat'] + 1}/{s.repeats} {rec['category']} {rec['config']}")
        bar.update()

    records = run_side_by_side({m.key: w.engines[m.key] for m in methods}, w.prompts, s.max_new_tokens, s.repeats,
                               s.seed, warmup_tokens=8, device=w.target.device, on_run=done)
    bar.close()
    by_key = {m.key: m for m in methods}
    return [run_record(r, by_key[r["config"]], w.prompts[r["category"]][r["prompt"]]) for r in records]


def run_bench(s: BenchSettings, out_dir: str | Path | None = None, workload: Workload | None = None
              ) -> dict[str, Any]:
    """Run the whole bench (on ``workload`` when given, else the one ``s`` names); write bench.json, bench.csv and
    bench.html to ``out_dir`` when given. The result holds meta, rows, theory, skipped and runs, as written."""
    from labkit.measure.bench import summary
    from labkit.measure.timing import weight_bytes

    s.check()
    # read with the prompts, before the runs: the result names the file and the sha256 of the bytes it measured
    source = load_prompts(s.prompts_file).describe() if s.prompts_file else None
    w = workload or load_workload(s)
    first = next(iter(w.prompts.values()))[0]
    threads = set_threads(s.threads, _forward_probe(w.target, first))
    # measured before the runs: the header prints it and the "auto" draft-length policy decides with it
    ref = machine.reference(w.target, rounds=4 if s.quick else machine.ROUNDS, copy_megabytes=16 if s.quick else 256)
    w.verify_cost = ref.verify_cost
    try:
        methods = build_engines(s, w, plan(s, w))
        runs = measure(s, w, methods)
    finally:  # servers never outlive the bench, whatever ended it
        for eng in w.engines.values():
            eng.close()
    wbytes = weight_bytes(w.target.model)
    rows = summary.summarize(runs, methods, list(w.prompts))
    summary.add_roofline(rows, wbytes)
    summary.add_free_draft_verify_cost(rows, runs)
    meta = _meta(s, w, threads, wbytes, ref)
    if source:
        meta["prompts_file"] = source
    meta["counter_check"] = summary.counter_check(runs)
    if w.target.weight_format == "int8" and w.target.tokenizer is not None:
        meta["quality_vs_bf16"] = summary.quality_vs_bf16(w.target, runs)
    result = {"meta": meta, "rows": [asdict(r) for r in rows],
              "theory": summary.theory_curves(rows, max(s.ks), w.verify_cost),
              "skipped": w.skipped, "runs": [r.as_dict() for r in runs]}
    if out_dir is not None:
        from labkit.measure.report import write_all

        result["files"] = write_all(result, out_dir)
    return result


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
            "weight_bytes": wbytes, "copy_gbps": ref.copy_gb_s, "verify_cost": ref.verify_cost.as_dict(),
            "machine_reference": ref.as_dict(), "load_average": load_average(),
            "prompts": {c: [int(x.numel()) for x in v] for c, v in w.prompts.items()},
            "baseline": HF_GREEDY.key, "when": time.strftime("%Y-%m-%d %H:%M:%S")}
