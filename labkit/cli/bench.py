"""`labkit bench`: its arguments and dispatch; the bench itself is labkit.measure.bench."""

from __future__ import annotations

import argparse
from typing import Any

from labkit.cli.args import add_prompts, positive_int
from labkit.core.drafter_spec import parse
from labkit.measure.bench.settings import ENGINES, LLAMA_METHODS, VLLM_METHODS, BenchSettings, quick_settings
from labkit.measure.prompts import CATEGORIES


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


def _csv_vllm(text: str) -> tuple[str, ...]:
    """vLLM methods, one per draft length: "plain,ngram@2,4" -> ("plain", "ngram@2", "ngram@4")."""
    out: list[str] = []
    for spec in _csv_specs(text):
        name, at, ks = spec.partition("@")
        out += [f"{name}@{k}" for k in ks.split(",")] if at else [name]
    return tuple(out)


def settings_from_args(a: argparse.Namespace) -> BenchSettings:
    if a.quick:
        over = {"progress": not a.no_progress, "cache": a.cache, "compile_mode": a.compile,
                "temperature": a.temperature, "top_k": a.top_k, "top_p": a.top_p}
        for name in ("ks", "policies", "repeats", "max_new_tokens", "drafters", "hf_modes", "categories",
                     "prompts_per_category", "prompts_file"):
            v = getattr(a, name)
            if v is not None:
                over[name] = v
        return quick_settings(**over)
    s = BenchSettings(model=a.model, dtype=a.dtype, device=a.device, assistant=a.assistant, threads=a.threads,
                      early_exit_layers=a.early_exit_layers, prompts_per_category=a.prompts_per_category,
                      cache=a.cache, compile_mode=a.compile, seed=a.seed, progress=not a.no_progress,
                      temperature=a.temperature, top_k=a.top_k, top_p=a.top_p, prompts_file=a.prompts_file)
    for name in ("ks", "policies", "repeats", "max_new_tokens", "drafters", "hf_modes", "categories", "engines"):
        v = getattr(a, name)
        if v is not None:
            setattr(s, name, v)
    s.llama_server = a.llama_server
    if a.llama_methods is not None:
        s.llama_methods = a.llama_methods
    if a.vllm_methods is not None:
        s.vllm_methods = a.vllm_methods
    return s


def cmd_bench(a: argparse.Namespace) -> int:
    s = settings_from_args(a)
    s.check()  # one-line errors before any model loads; the library skips a drafter it cannot build, the CLI refuses
    for spec in s.drafters:
        parse(spec.partition("@")[0])
    from transformers.utils import logging as hf_logging

    from labkit.measure.bench import run_bench
    from labkit.measure.report import format_table

    hf_logging.set_verbosity_error()  # transformers' assisted modes warn about their own internal calls
    result = run_bench(s, a.out)
    print(format_table(result))
    for f in result.get("files", []):
        print(f"wrote {f}")
    return 0


def register(sub: Any) -> None:
    """Add `labkit bench` to the subcommands."""
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
    p.add_argument("--prompts-per-category", type=positive_int, default=None,
                   help="prompts of each category (default: 5 of the built-in set, every prompt of --prompts)")
    add_prompts(p, "the built-in categories; --categories picks among the file's")
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
                   help="labkit,transformers (default), llama.cpp: llama-server on the same GGUF, plain, "
                        "ngram-mod (--spec-default) and ngram-simple / ngram-map-k at the bench's ks, and vllm: "
                        "vLLM's CPU build (`labkit vllm-server install`) on the same model, one server per method")
    p.add_argument("--llama-methods", type=_csv_strs, default=None,
                   help=f"llama.cpp configurations (default {','.join(LLAMA_METHODS)}); synthetic-ALPHA (e.g. "
                        "synthetic-0.8) adds llama.cpp's timing-only --spec-synth-rates at ALPHA^(j+1) by position "
                        "for each k: its speed against acceptance and k, and its verify cost")
    p.add_argument("--vllm-methods", type=_csv_vllm, default=None,
                   help=f"vLLM configurations (default {','.join(VLLM_METHODS)}): plain, ngram@K (K drafted tokens "
                        "by prompt lookup); ngram@2,4 is ngram@2 and ngram@4")
    p.add_argument("--llama-server", default=None, metavar="PATH",
                   help="the llama-server binary (default: $LABKIT_LLAMA_SERVER, else `labkit llama-server build`)")
    p.add_argument("--quick", action="store_true",
                   help="tiny random models, 16 tokens, 1 prompt per category: a smoke run in seconds")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_bench)
