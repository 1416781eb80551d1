"""The `labkit` command: prepare, generate, demo, doctor (and the subcommands other modules register).

Every argument is checked before any model loads, and a bad one answers in one line naming the fix.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

DEMO_PROMPTS = [
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "The capital of France is Paris. The capital of Germany is Berlin. The capital of Italy is",
    "Question: What is 12 times 12?\nAnswer:",
]
DEMO_QUICK = dict(ks="2,4", repeats=2, max_new_tokens=32)  # under 2 minutes on a busy 2-core machine
DEMO_FULL = dict(ks="1,2,4,8", repeats=3, max_new_tokens=48)
DRAFTER_FORMS = ("none, ngram[:n], early-exit[:layers], synthetic[:alpha], draft-model:<hub id or folder>, "
                 "mtp[:name or FILE.safetensors], hybrid[:min_match[:lookup_k:model_k[:mtp]]]")
MAX_K = 32  # labkit.core.sampling.MAX_K (not imported: it would pull in torch before argument checks)
HUB_TIMEOUT_S = 2.5  # the whole answer to a bad input must come within 5 s


class UsageError(ValueError):
    """A bad argument: one line naming the fix, before any model loads."""


class Parser(argparse.ArgumentParser):
    """argparse, but an error is one line (no usage block) and exits 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"labkit: error: {message} (see `{self.prog} --help`)\n")


# ----------------------------------------------------------------------------------------------- checks


def positive_int(text: str) -> int:
    if not text.lstrip("-").isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return int(text)


def draft_length(text: str) -> int | str:
    """--k: a whole number >= 0, or "auto" where the engine has a draft-length policy."""
    if text == "auto":
        if importlib.util.find_spec("labkit.core.draft_length") is None:
            raise argparse.ArgumentTypeError("'auto' needs labkit.core.draft_length (not in this version); "
                                             "pass a number such as --k 4")
        return text
    if not text.isdigit() or int(text) > MAX_K:
        raise argparse.ArgumentTypeError(f"expected a whole number in 0..{MAX_K} (or auto), got {text!r}")
    return int(text)


def k_list(text: str) -> list[int]:
    """--ks: comma-separated draft lengths >= 1."""
    try:
        ks = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        ks = []
    if not ks or min(ks) < 1:
        raise argparse.ArgumentTypeError(f"expected draft lengths >= 1 separated by commas, e.g. 2,4,8; got {text!r}")
    return ks


def shipped_mtp_heads() -> list[str]:
    """Names of the MTP heads shipped in labkit/data/mtp-<name>.safetensors (what mtp.weights.SHIPPED lists; not
    imported from there because that pulls in torch before the arguments are checked)."""
    from importlib import resources

    return sorted(f.name[4:-12] for f in resources.files("labkit").joinpath("data").iterdir()
                  if f.name.startswith("mtp-") and f.name.endswith(".safetensors"))


def check_drafter(spec: str) -> None:
    """The spec's form (and a draft model's availability), without building anything."""
    kind, colon, arg = spec.partition(":")
    if kind in ("", "none", "plain") and not arg:
        return
    if kind == "hybrid" and arg.count(":") in (2, 3):  # hybrid:min_match:lookup_k:model_k[:mtp] (make_drafter)
        min_match, lookup_k, model_k, *head = arg.split(":")
        check_drafter(f"hybrid:{min_match}" if min_match else "hybrid")
        for name, v in (("lookup_k", lookup_k), ("model_k", model_k)):
            if v != "auto" and not (v.isdigit() and int(v) >= 1):
                raise UsageError(f"drafter: {spec!r}: {name} must be 'auto' or a whole number >= 1, e.g. "
                                 "hybrid:3:auto:auto")
        if head:
            check_drafter(f"mtp:{head[0]}")
        return
    forms = {"ngram": ("n", int, 1), "early-exit": ("layers", int, 1), "early_exit": ("layers", int, 1),
             "synthetic": ("alpha", float, 0.0), "hybrid": ("min_match", int, 1)}
    if kind in forms:
        name, cast, low = forms[kind]
        if not colon:
            return
        try:
            value = cast(arg)
        except ValueError:
            value = None
        if value is None or value < low or (kind == "synthetic" and value > 1):
            rule = "a number in [0, 1]" if kind == "synthetic" else f"a whole number >= {low}"
            raise UsageError(f"drafter: {spec!r}: expected {kind}:<{name}> with <{name}> {rule}, e.g. "
                             f"{kind}:{'0.8' if kind == 'synthetic' else '3'}")
        return
    if kind in ("draft-model", "draft_model"):
        if not arg:
            raise UsageError("drafter: 'draft-model' needs a model: draft-model:<hub id or local folder>")
        check_model(arg, what="draft model")
        return
    if kind == "mtp":
        shipped = shipped_mtp_heads()
        if arg.endswith(".safetensors"):  # a head written by `labkit train-mtp`
            if not Path(arg).is_file():
                raise UsageError(f"drafter: {spec!r}: no such file {arg!r}")
            return
        if arg and arg not in shipped:
            raise UsageError(f"drafter: no shipped MTP head for {arg!r}; available: mtp:{', mtp:'.join(shipped)}; "
                             "train one with `labkit train-mtp`")
        return
    raise UsageError(f"drafter: unknown spec {spec!r}; expected one of: {DRAFTER_FORMS}")


def torch_build_cuda() -> str | None:
    """The CUDA version torch was built with (None: a CPU-only build), read from torch/version.py without importing
    torch (seconds on a busy machine)."""
    spec = importlib.util.find_spec("torch")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        with contextlib.suppress(OSError):
            for line in open(os.path.join(folder, "version.py"), encoding="utf-8"):
                if line.startswith("cuda"):
                    value = line.split("=", 1)[1].strip().strip("'\"")
                    return None if value == "None" else value
    import torch

    return torch.version.cuda


def check_device(device: str | None) -> None:
    if device is None or device == "cpu":
        return
    if not (device == "cuda" or device.startswith("cuda:") and device[5:].isdigit()):
        raise UsageError(f"device: expected cpu or cuda[:N], got {device!r}")
    if torch_build_cuda() is None:
        raise UsageError("device: this torch is a CPU-only build: drop --device cuda, or install a CUDA build of "
                         "torch (https://pytorch.org/get-started/locally/)")
    import torch

    if not torch.cuda.is_available():
        raise UsageError("device: no CUDA GPU is visible (torch.cuda.is_available() is False): drop --device cuda")


def go_offline() -> None:
    """Use only the local cache from now on: no hub retries while loading (the hub is unreachable)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    with contextlib.suppress(ImportError, AttributeError):
        import huggingface_hub.constants

        huggingface_hub.constants.HF_HUB_OFFLINE = True


def check_model(name: str, what: str = "model") -> None:
    """An embedded name, a local folder, or a hub id that is cached or downloadable now (asked in ~2 s)."""
    if os.path.isdir(name):
        return
    if name.startswith((".", "/", "~")) or name.count("/") != 1:
        from labkit.models.embedded import EMBEDDED

        if name in EMBEDDED:
            return
        raise UsageError(f"{what}: {name!r} is neither an embedded name ({', '.join(EMBEDDED)}), a local folder, "
                         "nor a Hugging Face id like google/gemma-3-270m")
    import huggingface_hub as hub
    from huggingface_hub.errors import GatedRepoError, HFValidationError, RepositoryNotFoundError
    from huggingface_hub.utils import validate_repo_id

    offline_hint = "; offline, use the embedded 'gemma3-270m'" if what == "model" else ""
    try:
        validate_repo_id(name)
    except HFValidationError:
        raise UsageError(f"{what}: {name!r} is not a valid Hugging Face id (owner/name)") from None
    cached = isinstance(hub.try_to_load_from_cache(name, "config.json"), str)  # a path when cached
    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        if not cached:
            raise UsageError(f"{what}: {name!r} is not in the local cache and HF_HUB_OFFLINE is set: download it "
                             f"with internet (hf download {name}) or pass a local folder{offline_hint}")
        return
    try:
        info = hub.model_info(name, timeout=HUB_TIMEOUT_S, files_metadata=False)
        if info.gated:
            hub.auth_check(name)  # raises GatedRepoError unless this token was granted access
    except GatedRepoError:
        raise UsageError(f"{what}: {name!r} is gated: accept its terms at https://huggingface.co/{name} while signed "
                         "in, then run `hf auth login` (or set HF_TOKEN)") from None
    except RepositoryNotFoundError:
        raise UsageError(f"{what}: {name!r} is not on the Hugging Face hub (or is private: `hf auth login`)") from None
    except Exception:  # no network, DNS, timeout, proxy: all mean "unreachable now"
        if cached:
            go_offline()
            return
        raise UsageError(f"{what}: {name!r} is not in the local cache and the Hugging Face hub is unreachable: "
                         f"download it once with internet (hf download {name}) or pass a local folder"
                         f"{offline_hint}") from None
    files = [s.rfilename for s in info.siblings or []]
    if files and not any(f.endswith(".safetensors") for f in files):
        raise UsageError(f"{what}: {name!r} has no safetensors weights (labkit never loads pickle files)")


def check_args(args: argparse.Namespace) -> None:
    """Everything that can be checked before a model loads."""
    if getattr(args, "temperature", 0) < 0:
        raise UsageError(f"--temperature: must be >= 0 (0 = greedy), got {args.temperature}")
    threads = str(getattr(args, "threads", "auto"))
    if threads != "auto" and not (threads.isdigit() and int(threads) > 0):
        raise UsageError(f"--threads: expected a number >= 1 or auto, got {threads!r}")
    top_p = getattr(args, "top_p", None)
    if top_p is not None and not 0 < top_p <= 1:
        raise UsageError(f"--top-p: must be in (0, 1], got {top_p}")
    drafter = getattr(args, "drafter", None)
    if drafter is not None:
        check_drafter(drafter)
        plain = drafter.partition(":")[0] in ("", "none", "plain")
        if getattr(args, "k", None) == 0 and not plain:
            raise UsageError(f"--k 0 means plain decoding and would ignore --drafter {drafter}: pass --k 1 or more, "
                             "or --drafter none")
    html = getattr(args, "html", None)
    if html and not os.path.isdir(os.path.dirname(os.path.abspath(html))):
        raise UsageError(f"--html: folder {os.path.dirname(html)!r} does not exist")
    check_device(getattr(args, "device", None))
    if hasattr(args, "model"):
        check_model(args.model)


def quiet_for_json() -> None:
    """--json: stdout carries only JSON, stderr stays empty (no progress bars, no library warnings)."""
    os.environ["TRANSFORMERS_VERBOSITY"] = "error"
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    warnings.filterwarnings("ignore")
    with contextlib.suppress(Exception):
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()


# ----------------------------------------------------------------------------------------------- commands


def _add_sampling(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="gemma3-270m", help="embedded name, Hugging Face id or local folder")
    p.add_argument("--dtype", default=None,
                   choices=["bf16", "bfloat16", "fp32", "float32", "fp16", "float16", "int8"],
                   help="bf16 (default), fp32, or int8 (int8 weight-only linears and LM head, bf16 activations)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    p.add_argument("--max-new-tokens", type=positive_int, default=64)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--top-k", type=positive_int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", default="auto", help="torch threads: a number, or auto (the cores other work "
                   "leaves free; $LABKIT_THREADS overrides)")
    p.add_argument("--json", action="store_true", help="print only JSON (no progress bars)")


def apply_threads(args: argparse.Namespace) -> int:
    from labkit.threads import set_threads

    return set_threads(args.threads)


def cmd_prepare(args: argparse.Namespace) -> int:
    from labkit.models.embedded import prepare_embedded

    t0 = time.perf_counter()
    path = prepare_embedded(args.model, progress=True)
    print(f"{args.model} ready in {path} ({time.perf_counter() - t0:.1f}s)")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from labkit import SpeculativeDecoder, load_target
    from labkit.drafters import make_drafter
    from labkit.lab.render import LEGEND, ansi, token_spans

    apply_threads(args)
    target = load_target(args.model, dtype=args.dtype, device=args.device, progress=not args.json)
    drafter = make_drafter(args.drafter, target)
    dec = SpeculativeDecoder(target, drafter, k=args.k)
    out = dec.generate(args.prompt, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                       top_k=args.top_k, top_p=args.top_p, seed=args.seed)
    if getattr(args, "html", None):
        from labkit.lab.views import save_html

        save_html(out, target.tokenizer, args.html)
    if args.json:
        print(json.dumps({"text": out.text, "token_ids": out.token_ids, "config": out.config,
                          "stats": out.stats.as_dict(), "rounds": [r.as_dict() for r in out.rounds]}))
        return 0
    spans = token_spans(out, target.tokenizer)
    print(args.prompt + ansi(spans, color=sys.stdout.isatty() or args.color))
    print(LEGEND if (sys.stdout.isatty() or args.color) else "")
    print(out.stats.summary())
    return 0


def demo_rows(target: Any, ks: list[int], max_new_tokens: int, repeats: int, drafter_spec: str,
              prompts: list[str] | None = None, progress: bool = True) -> list[dict[str, Any]]:
    """Median tok/s per k (k = 0 is plain decoding through the same loop), measured side by side."""
    from tqdm.auto import tqdm

    from labkit.drafters import make_drafter
    from labkit.measure.sweep import run_sweep

    prompts = prompts or DEMO_PROMPTS
    drafters = {"none": None} if 0 in ks else {}
    drafters[drafter_spec] = make_drafter(drafter_spec, target)
    bar = tqdm(total=len(ks) * repeats * len(prompts), desc="demo", disable=not progress)
    rows = run_sweep(target, drafters, ks, prompts, max_new_tokens=max_new_tokens, repeats=repeats,
                     on_run=lambda _: bar.update())
    bar.close()
    keep = ("drafter", "k", "decode_tok_s", "speedup", "tokens_per_verify", "mean_acceptance_length",
            "draft_acceptance_rate", "alpha", "draft_cost", "repetition")
    return [{key: r[key] for key in keep} for r in rows]


def demo_estimate(target: Any, n_runs: int, max_new_tokens: int) -> float:
    """Seconds the demo should take: one timed plain run (which also warms the model up) times the runs."""
    from labkit import SpeculativeDecoder

    t0 = time.perf_counter()
    SpeculativeDecoder(target, None).generate(DEMO_PROMPTS[0], max_new_tokens=8)
    per_token = (time.perf_counter() - t0) / 8
    return n_runs * max_new_tokens * per_token


def cmd_demo(args: argparse.Namespace) -> int:
    from labkit import load_target
    from labkit.lab.explain import explain_repetition, explain_speed, measurement_problem, outcome_now

    preset = DEMO_FULL if args.full else DEMO_QUICK
    repeats = args.repeats or preset["repeats"]
    max_new = args.max_new_tokens or preset["max_new_tokens"]
    ks = sorted({0, *(args.ks or k_list(preset["ks"]))})
    threads = apply_threads(args)
    target = load_target(args.model, dtype=args.dtype, device=args.device, progress=not args.json)
    n_runs = len(ks) * repeats * len(DEMO_PROMPTS)
    est = demo_estimate(target, n_runs, max_new)
    if not args.json:
        print(f"demo: {n_runs} runs of {max_new} tokens, about {est:.0f} s on this machine now "
              f"({threads} thread(s){'' if args.full else '; --full for the long version'})", file=sys.stderr)
    rows = demo_rows(target, ks, max_new, repeats, args.drafter, progress=not args.json)
    problems = [f"k={r['k']}: {p}" for r in rows if r["k"] > 0
                and (p := measurement_problem(r["speedup"], r["tokens_per_verify"]))]
    best = max(rows, key=lambda r: r["speedup"])
    summary = explain_speed(outcome_now(speedup=best["speedup"], tokens_per_verify=best["tokens_per_verify"],
                                        k=best["k"]), what=f"{args.drafter} at k = {best['k']}") if best["k"] else (
        "No draft length beat plain decoding in this run.")
    if args.json:
        print(json.dumps({"model": args.model, "dtype": str(target.dtype), "threads": threads, "rows": rows,
                          "warnings": problems, "summary": summary}))
        return 0
    print(f"{args.model} ({target.dtype}, {target.device}, {threads} thread(s)), {max_new} new tokens, greedy, "
          f"median of {repeats} x {len(DEMO_PROMPTS)} prompts")
    # Column names are the glossary's (labkit.core.metrics), so the demo reads like every other table in the lab.
    print(f"{'drafter':<12}{'k':>4}{'decode tok/s':>14}{'speedup':>10}{'tokens per verify':>19}"
          f"{'draft acceptance rate':>23}{'rep4':>7}")
    for r in rows:
        rep = f"{100 * r['repetition']:>6.0f}%" if r.get("repetition") is not None else f"{'-':>7}"
        acc = r["draft_acceptance_rate"]
        print(f"{r['drafter']:<12}{r['k']:>4}{r['decode_tok_s']:>14.1f}{r['speedup']:>9.2f}x"
              f"{r['tokens_per_verify']:>19.2f}" + (f"{100 * acc:>22.0f}%" if acc is not None else f"{'-':>23}") + rep)
    for p in problems:
        print(f"warning: {p}")
    print(summary)
    if rows[0].get("repetition") is not None:  # rep4: share of generated 4-grams already seen (prompt lookup's food)
        print(explain_repetition(rows[0]["repetition"]))
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = Parser(prog="labkit", description="See and measure speculative decoding.")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("prepare", help="assemble, dequantize and cache the embedded model")
    p.add_argument("--model", default="gemma3-270m")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("generate", help="generate with a drafter; accepted / rejected / bonus tokens coloured")
    p.add_argument("prompt")
    p.add_argument("--drafter", default="ngram", help=DRAFTER_FORMS)
    p.add_argument("--k", type=draft_length, default=4, help="draft length (0 = plain decoding, with --drafter none)")
    p.add_argument("--color", action="store_true", help="colour even when not writing to a terminal")
    p.add_argument("--html", default=None, help="also write a static HTML view of the result")
    _add_sampling(p)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("demo", help="speed versus k on 3 prompts (prints its time estimate first)")
    p.add_argument("--drafter", default="ngram", help=DRAFTER_FORMS)
    p.add_argument("--ks", type=k_list, default=None, help=f"draft lengths (default {DEMO_QUICK['ks']}, --full "
                   f"{DEMO_FULL['ks']})")
    p.add_argument("--repeats", type=positive_int, default=None)
    p.add_argument("--full", action="store_true", help="more draft lengths, repeats and tokens (several minutes)")
    _add_sampling(p)
    p.set_defaults(func=cmd_demo, max_new_tokens=None)

    for hook in _EXTRA:
        hook(sub)
    return ap


# Other modules (bench, train-mtp, doctor) register their subcommands here to keep this file small.
_EXTRA: list = []


def _load_extras() -> None:
    import importlib

    _EXTRA.clear()  # main() may run more than once in a process (tests)
    for mod in ("labkit.training.train_mtp", "labkit.measure.doctor",
                "labkit.engines.llama_cpp"):
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise
            continue
        _EXTRA.append(m.register_cli)


BUILTIN = ("prepare", "generate", "demo")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in BUILTIN:  # other commands' modules import heavy libraries: only when needed
        _load_extras()
    else:
        _EXTRA.clear()
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "json", False):
            quiet_for_json()
        if args.command in ("generate", "demo", "prepare"):
            check_args(args)
        return int(args.func(args) or 0)
    except (ValueError, RuntimeError) as e:
        load = sys.modules.get("labkit.models.load")  # imported by then whenever a model was asked for
        engines = sys.modules.get("labkit.engines.base")  # imported by then whenever an engine ran
        if isinstance(e, RuntimeError) and not (load and isinstance(e, load.ModelNotAvailableError)) and not (
                engines and isinstance(e, engines.EngineError)):
            raise
        print(f"labkit: error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("labkit: stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
