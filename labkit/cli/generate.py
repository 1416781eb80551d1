"""`labkit prepare`, `labkit generate` and `labkit demo`: the embedded model, one coloured generation, speed
against k.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from labkit.cli.args import add_prompts, add_sampling, apply_threads, check_args, draft_length, k_list, positive_int
from labkit.core.drafter_spec import FORMS
from labkit.measure.prompts import load_prompts

DEMO_PROMPTS = [
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "The capital of France is Paris. The capital of Germany is Berlin. The capital of Italy is",
    "Question: What is 12 times 12?\nAnswer:",
]
DEMO_QUICK = dict(ks="2,4", repeats=2, max_new_tokens=32)  # under 2 minutes on a busy 2-core machine
DEMO_FULL = dict(ks="1,2,4,8", repeats=3, max_new_tokens=48)


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


def demo_estimate(target: Any, n_runs: int, max_new_tokens: int, prompt: str = DEMO_PROMPTS[0]) -> float:
    """Seconds the demo should take: one timed plain run (which also warms the model up) times the runs."""
    from labkit import SpeculativeDecoder

    t0 = time.perf_counter()
    SpeculativeDecoder(target, None).generate(prompt, max_new_tokens=8)
    per_token = (time.perf_counter() - t0) / 8
    return n_runs * max_new_tokens * per_token


def cmd_demo(args: argparse.Namespace) -> int:
    from labkit import load_target
    from labkit.lab.explain import explain_repetition, explain_speed, measurement_problem, outcome_now

    preset = DEMO_FULL if args.full else DEMO_QUICK
    repeats = args.repeats or preset["repeats"]
    max_new = args.max_new_tokens or preset["max_new_tokens"]
    ks = sorted({0, *(args.ks or k_list(preset["ks"]))})
    source = load_prompts(args.prompts_file) if args.prompts_file else None  # checked already: cannot fail here
    prompts = source.texts() if source else DEMO_PROMPTS
    threads = apply_threads(args)
    target = load_target(args.model, dtype=args.dtype, device=args.device, progress=not args.json)
    n_runs = len(ks) * repeats * len(prompts)
    est = demo_estimate(target, n_runs, max_new, prompts[0])
    if not args.json:
        print(f"demo: {n_runs} runs of {max_new} tokens, about {est:.0f} s on this machine now "
              f"({threads} thread(s){'' if args.full else '; --full for the long version'})", file=sys.stderr)
    rows = demo_rows(target, ks, max_new, repeats, args.drafter, prompts, progress=not args.json)
    problems = [f"k={r['k']}: {p}" for r in rows if r["k"] > 0
                and (p := measurement_problem(r["speedup"], r["tokens_per_verify"]))]
    best = max(rows, key=lambda r: r["speedup"])
    summary = explain_speed(outcome_now(speedup=best["speedup"], tokens_per_verify=best["tokens_per_verify"],
                                        k=best["k"]), what=f"{args.drafter} at k = {best['k']}") if best["k"] else (
        "No draft length beat plain decoding in this run.")
    if args.json:
        print(json.dumps({"model": args.model, "dtype": str(target.dtype), "threads": threads, "rows": rows,
                          "warnings": problems, "summary": summary}
                         | ({"prompts_file": source.describe()} if source else {})))
        return 0
    print(f"{args.model} ({target.dtype}, {target.device}, {threads} thread(s)), {max_new} new tokens, greedy, "
          f"median of {repeats} x {len(prompts)} prompts" + (f" from {args.prompts_file}" if source else ""))
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


def checked(cmd: Any) -> Any:
    """``cmd`` after every check that can run before a model loads (labkit.cli.args.check_args)."""
    def run(args: argparse.Namespace) -> int:
        check_args(args)
        return cmd(args)
    return run


def register(sub: Any) -> None:
    p = sub.add_parser("prepare", help="assemble, dequantize and cache the embedded model")
    p.add_argument("--model", default="gemma3-270m")
    p.set_defaults(func=checked(cmd_prepare))

    p = sub.add_parser("generate", help="generate with a drafter; accepted / rejected / bonus tokens coloured")
    p.add_argument("prompt")
    p.add_argument("--drafter", default="ngram", help=FORMS)
    p.add_argument("--k", type=draft_length, default=4, help="draft length (0 = plain decoding, with --drafter none)")
    p.add_argument("--color", action="store_true", help="colour even when not writing to a terminal")
    p.add_argument("--html", default=None, help="also write a static HTML view of the result")
    add_sampling(p)
    p.set_defaults(func=checked(cmd_generate))

    p = sub.add_parser("demo", help="speed versus k on 3 prompts or yours (prints its time estimate first)")
    p.add_argument("--drafter", default="ngram", help=FORMS)
    p.add_argument("--ks", type=k_list, default=None, help=f"draft lengths (default {DEMO_QUICK['ks']}, --full "
                   f"{DEMO_FULL['ks']})")
    p.add_argument("--repeats", type=positive_int, default=None)
    p.add_argument("--full", action="store_true", help="more draft lengths, repeats and tokens (several minutes)")
    add_prompts(p, "the demo's 3")
    add_sampling(p)
    p.set_defaults(func=checked(cmd_demo), max_new_tokens=None)
