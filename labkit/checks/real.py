"""The real google/gemma-4-E2B-it + assistant on the bench prompts, where a token and the hub allow it."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch

from labkit.checks.options import GpuCheckOptions
from labkit.checks.report import Report
from labkit.core import metrics
from labkit.lab.real_pair import REAL_ASSISTANT, REAL_TARGET, load_real_pair


def _hub_reachable(timeout: float = 3.0) -> bool:
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def real_bench(rep: Report, args: GpuCheckOptions, device: torch.device) -> dict | None:
    """The real google/gemma-4-E2B-it + assistant on the bench prompts (one per category): labkit plain and with the
    assistant vs transformers greedy and assisted generation; speedup and acceptance by position."""
    from labkit.measure.bench import BenchSettings, Workload, prompt_ids, run_bench
    from labkit.measure.prompts import CATEGORIES as ALL
    from labkit.measure.report import format_table

    target, assistant = load_real_pair(device)
    rep.info("real pair loaded", f"{REAL_TARGET} + {REAL_ASSISTANT}, {target.dtype}, {target.load_seconds:.0f}s")
    s = BenchSettings(model=REAL_TARGET, device=str(device), drafters=("assistant@4",), ks=(0, 4), policies=(),
                      hf_modes=("greedy", "assistant@4"), categories=ALL, prompts_per_category=1,
                      max_new_tokens=64, repeats=1, threads=torch.get_num_threads(), progress=False)
    w = Workload(target, prompt_ids(target, s), assistant.model)
    result = run_bench(s, Path(args.out) / "real" if args.out else None, workload=w)
    print(format_table(result), flush=True)
    overall = {(r["engine"], r["method"]): r for r in result["rows"] if r["category"] == "all"}
    lab, hf = overall.get(("labkit", "assistant")), overall.get(("transformers", "assistant"))
    plain = overall[("labkit", "plain")]
    if lab:
        pos = ", ".join(f"{a:.2f}" for a in lab["acceptance_by_position"] or [])
        ratio = metrics.speedup(lab["end_to_end_tok_s"], plain["end_to_end_tok_s"])
        rep.info("real: labkit + assistant (k=4)", f"{lab['end_to_end_tok_s']:.1f} tok/s, {ratio:.2f}x "
                 f"labkit plain, {lab['ratio_vs_hf_greedy']:.2f}x transformers greedy; acceptance by position {pos}")
    if hf:
        rep.info("real: transformers + assistant (k=4)", f"{hf['end_to_end_tok_s']:.1f} tok/s, "
                 f"{hf['ratio_vs_hf_greedy']:.2f}x transformers greedy")
    return {"rows": result["rows"], "meta": result["meta"]}


def real_skip_reason() -> str | None:
    """Why the real pair cannot run here (no token, no network), or None."""
    from huggingface_hub import get_token

    if not (os.environ.get("HF_TOKEN") or get_token()):
        return "no HF_TOKEN (the Gemma weights are gated: accept the terms on the model page, then set HF_TOKEN)"
    if not _hub_reachable():
        return "huggingface.co is not reachable from this machine"
    return None
