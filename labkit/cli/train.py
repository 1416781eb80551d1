"""``labkit train-mtp`` and ``labkit eval-mtp``: their flags and dispatch; the work is in ``labkit.training``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from labkit.training.config import TrainConfig  # no torch: --help and flag errors answer at once


def layer_list(text: str) -> tuple[int, ...]:
    if text.strip().lower() == "none":
        return ()
    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated layer numbers such as 2,9,15 or 'none', "
                                         f"got {text!r}") from None


def register(sub: Any) -> None:
    """Add train-mtp and eval-mtp to the ``labkit`` subcommands."""
    _register_train_mtp(sub)
    _register_eval_mtp(sub)


def _register_train_mtp(sub: Any) -> None:
    p = sub.add_parser("train-mtp", help="train an MTP drafter for a target by self-distillation")
    d = TrainConfig()
    p.add_argument("--target", default=d.target, help="embedded name, Hugging Face id or local folder")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--out", required=True, help="folder for data, checkpoints and the trained mtp.safetensors")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--data-only", action="store_true",
                   help="only generate the data shards (hours for 300k+ positions on 2 cores; resumable)")
    p.add_argument("--data-batches", type=int, default=d.data_batches)
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="sequences generated in parallel")
    p.add_argument("--new-tokens", type=int, default=d.new_tokens)
    p.add_argument("--vocab", type=int, default=d.vocab, help="size of the reduced vocabulary the head scores")
    p.add_argument("--layers", type=int, default=d.layers, choices=(1, 2))
    p.add_argument("--seed-set", default=d.seed_set, choices=("v1", "v2", "summaries"),
                   help="seed prompts of the shards this run adds: v1 = the first head's; v2 adds translation, code "
                        "and chat formats; summaries = article + 'Summary:' only (extra shards for that category)")
    p.add_argument("--fuse", action="store_true",
                   help="an EAGLE-3-style head: its first step reads the fused --aux-layers features")
    p.add_argument("--fuse-last", action="store_true",
                   help="with --fuse: the last hidden state is a fourth feature (lets --init-from start the fused "
                        "head from a trained unfused one)")
    p.add_argument("--init-from", default=None, metavar="MTP_SAFETENSORS",
                   help="start from this drafter's weights and vocabulary (e.g. labkit/data/mtp-gemma3-270m."
                        "safetensors) instead of a random head")
    p.add_argument("--aux-layers", type=layer_list, default=None,
                   help="target layers whose inputs the data stores for a fused (EAGLE-3) head, e.g. 2,9,15; "
                        "'none' for none (default: EAGLE-3's low, middle and high layers)")
    p.add_argument("--hidden", type=int, default=None)
    p.add_argument("--intermediate", type=int, default=None)
    p.add_argument("--unroll", type=int, default=d.unroll)
    p.add_argument("--distill-top", type=int, default=d.distill_top,
                   help="how many of the target's top probabilities per position the loss distils on (<= 32)")
    p.add_argument("--train-batch", type=int, default=d.train_batch)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--eval-every", type=int, default=d.eval_every)
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every)
    p.add_argument("--threads", type=int, default=None, help="torch threads (1 is fastest on a busy machine)")
    p.set_defaults(func=cmd_train_mtp)


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig the train-mtp flags ask for."""
    if args.steps < 1:
        raise ValueError(f"--steps: must be >= 1, got {args.steps}")
    return TrainConfig(target=args.target, out=args.out, steps=args.steps, seed=args.seed,
                       data_batches=args.data_batches, batch_size=args.batch_size, new_tokens=args.new_tokens,
                       vocab=args.vocab, layers=args.layers, hidden=args.hidden, intermediate=args.intermediate,
                       unroll=args.unroll, distill_top=args.distill_top, train_batch=args.train_batch, lr=args.lr,
                       eval_every=args.eval_every, aux_layers=args.aux_layers, fuse=args.fuse,
                       fuse_last=args.fuse_last, init_from=args.init_from, seed_set=args.seed_set,
                       checkpoint_every=args.checkpoint_every, threads=args.threads)


def cmd_train_mtp(args: argparse.Namespace) -> int:
    from labkit.training.distill import train

    summary = train(train_config(args), resume=args.resume, data_only=args.data_only)
    if args.data_only:
        print(f"data in {Path(args.out) / 'data'}: {summary['shards']} shards, {summary['positions']:,} positions "
              f"({summary['data_seconds']}s this run)")
        return 0
    ev = summary["heldout"]
    print(f"wrote {Path(args.out) / 'mtp.safetensors'}: {summary['steps']} steps, data {summary['data_seconds']}s, "
          f"training {summary['train_seconds']}s; held-out greedy tokens/verify "
          f"{ {k: round(v, 2) for k, v in ev['mean_acceptance_length'].items()} }")
    return 0


def _register_eval_mtp(sub: Any) -> None:
    p = sub.add_parser("eval-mtp", help="how an MTP drafter does on the embedded default (every bench prompt)",
                       description="How the shipped MTP drafter does on the embedded default.")
    p.add_argument("--weights", default=None, help="an mtp.safetensors (default: the shipped weights)")
    p.add_argument("--ks", default="2,3,4,6")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--per-category", type=int, default=None)
    p.add_argument("--dtype", default="bf16")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=None, help="write rows and summary as JSON here")
    p.set_defaults(func=cmd_eval_mtp)


def cmd_eval_mtp(args: argparse.Namespace) -> int:
    from labkit.training.evaluate import evaluate_drafter

    result = evaluate_drafter(args.weights, [int(k) for k in args.ks.split(",")], args.max_new_tokens,
                              args.per_category, args.dtype, args.threads)
    print(json.dumps(result["summary"], indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    return 0
