"""`labkit bench`: labkit's drafters x k x prompt categories, side by side with transformers' ``generate``.

Every configuration runs on the same prompts (token ids, tokenized once) with the same token budget (EOS ignored,
so every run emits exactly ``max_new_tokens``), through ``labkit.measure.sweep.run_side_by_side``: configurations in
a shuffled order per prompt, so machine noise hits them alike; speeds are medians over repeats, and every row also
carries its ratio to transformers' greedy ``generate`` measured in the same run, on the same category.

With ``--temperature T`` every labkit configuration also runs under sampling (seeded; T, top-k, top-p as given),
and a sampled row's ``ratio_vs_plain`` divides by labkit's plain *sampled* decoding at the same settings. Every row
carries ``repetition``: the share of generated 4-grams already seen in prompt + output, where prompt lookup wins.

Three modules, along the bench's seams: ``settings`` (settings, methods, workload, the plan), ``run`` (an engine
per method, the runs, ``run_bench``), ``summary`` (typed rows, ratios, theory, roofline, int8 quality). The
command line is ``labkit.cli.bench``; the table and files, ``labkit.measure.report``.
"""

from typing import Any

# Names load on first use: `labkit --help` reads the settings' names (labkit.cli.bench) without importing torch.
_MODULES = {
    "settings": ("DEFAULT_KS", "ENGINES", "HF_GREEDY", "LABKIT_DRAFTERS", "LABKIT_PLAIN", "LLAMA_METHODS",
                 "VLLM_METHODS", "BenchSettings", "Method", "Workload", "bench_prompts", "load_workload", "plan",
                 "prompt_ids", "quick_settings", "spec_ks"),
    "run": ("RunRecord", "build_engines", "measure", "run_bench", "run_record", "set_threads"),
    "summary": ("ROUND_METRICS", "Row", "add_free_draft_verify_cost", "add_roofline", "counter_check",
                "quality_vs_bf16", "summarize", "theory_curves"),
}
_EXPORTS = {name: f"labkit.measure.bench.{module}" for module, names in _MODULES.items() for name in names}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'labkit.measure.bench' has no attribute {name!r}")
