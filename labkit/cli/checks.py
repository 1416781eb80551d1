"""`labkit gpu-check` and `labkit vllm-check`: the device and engine checks (labkit.checks) that
scripts/gpu_check.sh runs."""

from __future__ import annotations

import argparse
from typing import Any


def cmd_gpu_check(a: argparse.Namespace) -> int:
    from labkit.checks.gpu import run
    from labkit.checks.options import GpuCheckOptions

    return run(GpuCheckOptions(device=a.device, size=a.size, dtype=a.dtype, ks=a.ks, max_new_tokens=a.max_new_tokens,
                               repeats=a.repeats, chi2_draws=a.chi2_draws, compile_mode=a.compile_mode,
                               no_compile=a.no_compile, no_real=a.no_real, budget_s=a.budget_s, out=a.out))


def cmd_vllm_check(a: argparse.Namespace) -> int:
    import os

    from labkit.checks.vllm import run

    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    return run(k=a.k, tokens=a.tokens, timeout=a.timeout, out=a.out)


def _ints(text: str) -> list[int]:
    return [int(k) for k in text.split(",")]


def register(sub: Any) -> None:
    p = sub.add_parser("gpu-check", help="the device check (scripts/gpu_check.sh): correctness on tiny models, "
                       "lossless sampling, speed at Gemma 4 E2B's real shapes")
    p.add_argument("--device", default="cuda")
    p.add_argument("--size", choices=("e2b", "tiny"), default=None, help="default: e2b on cuda, tiny elsewhere")
    p.add_argument("--dtype", default=None, help="bf16 / fp16 / fp32; default: the device's (e2b), fp32 (tiny)")
    p.add_argument("--ks", type=_ints, default=[0, 4, 8])
    p.add_argument("--max-new-tokens", type=int, default=None, help="default 64 (e2b), 48 (tiny)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--chi2-draws", type=int, default=None, help="per χ² check; default 1500 (cuda), 600 elsewhere")
    p.add_argument("--compile-mode", default=None, help="torch.compile mode (default: reduce-overhead on cuda)")
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--no-real", action="store_true", help="never load the real Gemma 4 E2B pair")
    p.add_argument("--budget-s", type=float, default=270.0, help="sections that would not fit are skipped")
    p.add_argument("--out", default=None, help="write gpu_check.json and the bench JSON / CSV / HTML here")
    p.set_defaults(func=cmd_gpu_check)

    p = sub.add_parser("vllm-check", help="vLLM, where it is installed: serve the embedded model with its n-gram "
                       "drafter and read the spec-decode counters through labkit's server engine")
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--timeout", type=float, default=300)
    p.add_argument("--out", default=None, help="write the result as JSON here")
    p.set_defaults(func=cmd_vllm_check)
