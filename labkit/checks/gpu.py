"""A self-contained device check: correctness on tiny models, lossless sampling, speed at Gemma 4 E2B's real shapes.

``scripts/gpu_check.sh OUT_DIR`` (``labkit gpu-check``) runs it on one GPU in <= 5 minutes without downloading anything:

* greedy equality on tiny fp32 models: every drafter, dynamic and static cache, and compiled static-cache drafting;
* χ² of three sampled tokens with k = 2 (draft position 2) for the MTP head and the Gemma 4 assistant, on the device;
* a random Gemma 4 pair at E2B's real dimensions (head_dim 256, global_head_dim 512, 262k vocabulary, centroid
  head): plain vs the assistant vs labkit's MTP head vs transformers, and the bandwidth roofline;
* with HF_TOKEN and network: the real google/gemma-4-E2B-it + assistant on the bench prompts; else one line why not.

One table on stdout at the end, and gpu_check.json (plus the bench files) in OUT_DIR. ``--device cpu --size tiny``
runs it in a minute on a CPU. Exit status 1 when a correctness check fails (speed is reported, never asserted).
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from labkit.checks.correctness import check_greedy, check_lossless, check_sampling
from labkit.checks.options import GpuCheckOptions
from labkit.checks.pairs import e2b_like_pair, tiny_pair_on
from labkit.checks.real import real_bench, real_skip_reason
from labkit.checks.report import Report
from labkit.checks.speed import bench_table, compile_path, device_copy_gbps, report_bandwidth
from labkit.lab.real_pair import REAL_TARGET


def run(a: GpuCheckOptions) -> int:
    """Every section in turn; the table on stdout and gpu_check.json in ``a.out``. 1 when a correctness check
    failed, 2 when the device is not there."""
    a.settled()
    rep = Report(a.budget_s)
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here (pass --device cpu --size tiny for the CPU smoke run)", file=sys.stderr)
        return 2
    dtype = _start(rep, a, device)
    rep.section("greedy equality on tiny fp32 models", lambda: check_greedy(rep, device))
    rep.section("lossless sampling rule on the device", lambda: check_sampling(rep, device))
    rep.section("lossless sampling at draft position 2 on the device", lambda: check_lossless(rep, device,
                a.chi2_draws), need_s=30)
    mb = 1024 if device.type == "cuda" else 64
    copy_gbps = rep.section("device copy rate", lambda: device_copy_gbps(device, mb))
    if copy_gbps:
        rep.info("copy rate", f"{copy_gbps:.1f} GB/s (read + write, {mb} MiB buffer)")
        rep.data["copy_gbps"] = copy_gbps
    _random_pair(rep, a, device, dtype)
    if not a.no_compile:  # last: each graph shape compiles once (a few per target; minutes with inductor)
        mode = a.compile_mode or ("reduce-overhead" if device.type == "cuda" else "eager")
        rep.section(f"compiled static-cache drafting on tiny fp32 models ({mode})",
                    lambda: check_greedy(rep, device, mode), need_s=60)
    _real(rep, a, device)
    return _finish(rep, a)


def _start(rep: Report, a: GpuCheckOptions, device: torch.device) -> torch.dtype:
    """Say what runs where (and record it); the dtype the random pair is built in."""
    import transformers

    from labkit.models.load import default_dtype

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    rep.say(f"torch {torch.__version__}, transformers {transformers.__version__}, device {name}, size {a.size}")
    rep.data["meta"] = {"torch": torch.__version__, "transformers": transformers.__version__, "device": name,
                        "size": a.size, "args": asdict(a)}
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32, None: None}[a.dtype] or (
        default_dtype(device) if a.size == "e2b" else torch.float32)  # e2b: bf16, fp16 on a T4


def _random_pair(rep: Report, a: GpuCheckOptions, device: torch.device, dtype: torch.dtype) -> None:
    """The random target + assistant at the asked size: the bench table, its roofline, the compile path."""
    from labkit.measure.timing import weight_bytes

    pair = rep.section(f"build random {a.size} target + assistant",
                       lambda: e2b_like_pair(device, dtype) if a.size == "e2b" else tiny_pair_on(device, dtype))
    if pair is None:
        return
    target, assistant = pair
    rep.info("target weights read per token", f"{weight_bytes(target) / 1e6:.1f} MB "
             f"({sum(p.numel() for p in target.parameters()) / 1e6:.1f}M parameters in all)")
    result = rep.section("bench table (device-synchronized timing)",
                         lambda: bench_table(rep, a, target, assistant, device), need_s=60)
    if result:
        report_bandwidth(rep, result)
        rep.data["bench"] = {"meta": result["meta"], "rows": result["rows"], "skipped": result["skipped"]}
    if not a.no_compile:  # tiny Gemma 4's sliding window (8) is too short for a static cache
        model = target if a.size == "e2b" else tiny_pair_on(device, dtype, sliding_window=128)[0]
        rep.section("compile / CUDA-graph path", lambda: compile_path(rep, a, model, device), need_s=45)


def _real(rep: Report, a: GpuCheckOptions, device: torch.device) -> None:
    why = "--no-real" if a.no_real else real_skip_reason()
    if why:
        rep.say(f"SKIP real {REAL_TARGET} + assistant: {why}")
        rep._section = "real Gemma 4 E2B"
        rep._row("SKIP", f"real {REAL_TARGET} + assistant", why)
        rep.data["real"] = {"skipped": why}
    else:
        rep.data["real"] = rep.section(f"real {REAL_TARGET} + assistant (bench prompts)",
                                       lambda: real_bench(rep, a, device))


def _finish(rep: Report, a: GpuCheckOptions) -> int:
    rep.say(f"done: {len(rep.failures)} failed" + (f" ({', '.join(rep.failures)})" if rep.failures else ""))
    print(rep.table(), flush=True)
    if a.out:
        Path(a.out).mkdir(parents=True, exist_ok=True)
        report: dict[str, Any] = {"failures": rep.failures, "checks": rep.rows, **rep.data}
        (Path(a.out) / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str))
    return 1 if rep.failures else 0
