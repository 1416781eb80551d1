"""A self-contained device check: correctness on tiny models, copy bandwidth, a bench table, the compile path.

Downloads nothing: the "e2b" size builds random-weight models with Gemma-4-E2B-like shapes from configs (a target
and a Gemma 4 assistant), the synthetic drafter stands in for acceptance, and every timing is device-synchronized.
Sized for <= 5 minutes on one H200 (`scripts/gpu_check.sh`); ``--device cpu --size tiny`` runs it in seconds.
Exit status 1 when a correctness check fails (speed is reported, never asserted).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

import torch

from labkit.measure import theory

CATEGORIES = ("conversation", "code", "math")  # prompts are random ids here: three are enough for the table


class Report:
    """Collects PASS / FAIL / INFO lines and keeps the time budget."""

    def __init__(self, budget_s: float):
        self.t0 = time.perf_counter()
        self.budget_s = budget_s
        self.failures: list[str] = []

    def left(self) -> float:
        return self.budget_s - (time.perf_counter() - self.t0)

    def say(self, text: str) -> None:
        print(f"[{time.perf_counter() - self.t0:6.1f}s] {text}", flush=True)

    def check(self, name: str, ok: bool, detail: str = "") -> None:
        self.say(f"{'PASS' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}")
        if not ok:
            self.failures.append(name)

    def section(self, name: str, fn: Callable[[], Any], need_s: float = 0.0) -> Any:
        if self.left() < need_s:
            self.say(f"SKIP {name}: {self.left():.0f}s left of the budget, it needs ~{need_s:.0f}s")
            return None
        self.say(f"== {name}")
        try:
            return fn()
        except Exception as e:  # noqa: BLE001  (report and go on: the other sections still say something)
            self.check(name, False, f"{type(e).__name__}: {e}")
            traceback.print_exc(limit=3)
            return None


# ----------------------------------------------------------------------------------------------- models


def e2b_like_pair(device: torch.device, dtype: torch.dtype) -> tuple[Any, Any]:
    """Random Gemma 4 target and assistant with E2B-like shapes (35 layers, hidden 1536, 20 KV-shared layers,
    per-layer embeddings, 262k vocabulary; a 4-layer assistant reading the target's K/V), built on the device."""
    from transformers import Gemma4AssistantConfig, Gemma4AssistantForCausalLM, Gemma4ForCausalLM, Gemma4TextConfig

    shared = dict(vocab_size=262144, num_key_value_heads=1, head_dim=256, global_head_dim=512, sliding_window=512,
                  max_position_embeddings=32768, pad_token_id=0, bos_token_id=2, eos_token_id=1)
    tc = Gemma4TextConfig(hidden_size=1536, intermediate_size=6144, num_hidden_layers=35, num_attention_heads=8,
                          layer_types=(["sliding_attention"] * 4 + ["full_attention"]) * 7, num_kv_shared_layers=20,
                          hidden_size_per_layer_input=256, vocab_size_per_layer_input=262144,
                          use_double_wide_mlp=True, final_logit_softcapping=30.0, **shared)
    ac = Gemma4AssistantConfig(
        text_config=Gemma4TextConfig(hidden_size=256, intermediate_size=2048, num_hidden_layers=4,
                                     num_attention_heads=4, layer_types=["sliding_attention"] * 3 + ["full_attention"],
                                     hidden_size_per_layer_input=0, vocab_size_per_layer_input=0, **shared),
        backbone_hidden_size=1536, use_ordered_embeddings=True)
    torch.manual_seed(0)
    with torch.device(device):
        old = torch.get_default_dtype()
        torch.set_default_dtype(dtype)  # build in the target dtype: no fp32 copy of ~5B parameters
        try:
            target, assistant = Gemma4ForCausalLM(tc), Gemma4AssistantForCausalLM(ac)
            # a trained assistant ships its token order; a random one needs a permutation, not the zero init
            assistant.masked_embedding.token_ordering.copy_(torch.randperm(tc.vocab_size))
        finally:
            torch.set_default_dtype(old)
    target.generation_config.eos_token_id = None
    assistant.generation_config.num_assistant_tokens = 4
    return target.eval(), assistant.eval()


def tiny_pair_on(device: torch.device, dtype: torch.dtype, sliding_window: int = 8) -> tuple[Any, Any]:
    from labkit.models.tiny import tiny_gemma4_pair

    t, a = tiny_gemma4_pair(vocab_size=64, seed=0, sliding_window=sliding_window)
    return t.to(device=device, dtype=dtype), a.to(device=device, dtype=dtype)


# ----------------------------------------------------------------------------------------------- correctness


def _hf_greedy(model: Any, ids: torch.Tensor, n: int, **extra: Any) -> list[int]:
    gc = copy.deepcopy(model.generation_config)
    gc.update(do_sample=False, max_new_tokens=n, eos_token_id=None, pad_token_id=0, temperature=None, top_k=None,
              top_p=None, num_assistant_tokens=4, num_assistant_tokens_schedule="constant")
    x = ids[None]
    return model.generate(x, attention_mask=torch.ones_like(x), generation_config=gc, **extra)[0, ids.numel():].tolist()


def check_greedy(rep: Report, device: torch.device) -> None:
    """fp32 tiny models on the device: every drafter, both caches and transformers give the same greedy tokens."""
    from labkit.core.engine import SpeculativeDecoder
    from labkit.drafters import DraftModelDrafter, EarlyExitDrafter, NGramDrafter, SyntheticDrafter
    from labkit.drafters.gemma4_assistant import Gemma4AssistantDrafter
    from labkit.models.tiny import tiny_gemma4_pair, tiny_model

    ids = torch.tensor([5, 6, 7, 8, 5, 6, 7, 8, 9, 10, 11], device=device)
    t3 = tiny_model(64, layers=3, hidden=48, seed=1, sliding_window=64).to(device)
    d3 = tiny_model(64, layers=1, hidden=32, seed=2, sliding_window=64).to(device)
    base = SpeculativeDecoder(t3, None, k=0).generate(ids, max_new_tokens=24).token_ids
    rep.check("gemma3 tiny: labkit plain == transformers greedy", base == _hf_greedy(t3, ids, 24))
    for name, dr, k in [("ngram", NGramDrafter(3), 4), ("draft-model", DraftModelDrafter(d3), 3),
                        ("early-exit", EarlyExitDrafter(1), 2), ("synthetic", SyntheticDrafter(0.7), 4)]:
        for cache in ("dynamic", "static"):
            out = SpeculativeDecoder(t3, dr, k=k, cache=cache).generate(ids, max_new_tokens=24).token_ids
            rep.check(f"gemma3 tiny: {name} k={k} ({cache} cache) == plain", out == base)
    t4, a4 = (m.to(device) for m in tiny_gemma4_pair(vocab_size=64, seed=0))
    base4 = SpeculativeDecoder(t4, None, k=0).generate(ids, max_new_tokens=24).token_ids
    rep.check("gemma4 tiny: labkit plain == transformers greedy", base4 == _hf_greedy(t4, ids, 24))
    out = SpeculativeDecoder(t4, Gemma4AssistantDrafter(a4), k=3).generate(ids, max_new_tokens=24).token_ids
    rep.check("gemma4 tiny: labkit + gemma4 assistant == plain", out == base4)
    rep.check("gemma4 tiny: transformers + gemma4 assistant == greedy",
              _hf_greedy(t4, ids, 24, assistant_model=a4) == base4)


def _tv(counts: torch.Tensor, p: torch.Tensor) -> float:
    return 0.5 * float((counts / counts.sum() - p).abs().sum())


def check_sampling(rep: Report, device: torch.device, trials: int = 4000) -> None:
    """The rejection rule on the device: the first emitted token is distributed as p (and a broken rule is not)."""
    from labkit.core.acceptance import accept_all_verify, sampling_verify

    g = torch.Generator(device=device).manual_seed(0)
    p = torch.tensor([0.45, 0.25, 0.15, 0.1, 0.05], device=device)
    q = torch.tensor([0.1, 0.1, 0.1, 0.2, 0.5], device=device)
    for name, rule, limit, want in [("sampling_verify", sampling_verify, 0.05, True),
                                    ("negative control (accept everything)", accept_all_verify, 0.05, False)]:
        counts = torch.zeros(5)
        for _ in range(trials):
            draft = torch.multinomial(q, 1, generator=g)
            v = rule(draft, torch.stack([p, p]), q[None], g)
            counts[int(draft) if v.accepted else v.next_token] += 1
        tv = _tv(counts, p.cpu())
        rep.check(f"{name}: first token ~ p", (tv < limit) == want, f"TV={tv:.3f} ({trials} draws, limit {limit})")


# ----------------------------------------------------------------------------------------------- speed


def device_copy_gbps(device: torch.device, mbytes: int) -> float:
    from labkit.measure.timing import copy_bandwidth

    return copy_bandwidth(device, megabytes=mbytes) / 1e9


def bench_table(rep: Report, args: argparse.Namespace, target: Any, assistant: Any, device: torch.device) -> dict:
    """labkit.measure.bench on the random pair: plain, n-gram, synthetic, the Gemma 4 assistant, vs transformers."""
    from labkit.measure.bench import BenchSettings, Workload, _prompt_ids, run_bench
    from labkit.measure.report import format_table
    from labkit.models.load import Target

    ks = tuple(args.ks)
    s = BenchSettings(model="random", device=str(device), drafters=("ngram", f"synthetic:0.8@{max(ks)}",
                      f"assistant@{','.join(str(k) for k in ks if k)}"),
                      ks=ks, hf_modes=("greedy", "prompt-lookup", f"assistant@{max(ks)}"), categories=CATEGORIES,
                      prompts_per_category=1, max_new_tokens=args.max_new_tokens, repeats=args.repeats,
                      threads=torch.get_num_threads(), progress=False)
    t = Target(target, None, f"random {args.size}")
    w = Workload(t, _prompt_ids(t, s), assistant)
    result = run_bench(s, args.out, workload=w)
    print(format_table(result), flush=True)
    return result


def report_bandwidth(rep: Report, result: dict) -> None:
    meta = result["meta"]
    plain = next(r for r in result["rows"] if r["category"] == "all" and r["method"] == "plain")
    gbps = plain["tok_s"] * meta["weight_bytes"] / 1e9
    rep.say(f"INFO plain decoding: {plain['tok_s']:.1f} tok/s x {meta['weight_bytes'] / 1e6:.1f} MB of weights read "
            f"per token = {gbps:.1f} GB/s, {100 * gbps / meta['copy_gbps']:.0f}% of the measured copy rate "
            f"({meta['copy_gbps']:.0f} GB/s, read + write)")
    for c in result["theory"]:
        rep.say(f"INFO theory for {c['drafter']}: alpha={c['alpha']:.2f}, c={c['c']:.3f} -> best k={c['best_k']}, "
                f"{theory.best_k(c['alpha'], c['c'], 16)[1]:.2f}x over plain")
    syn = [r for r in result["rows"] if r["category"] == "all" and r["method"].startswith("synthetic")]
    for r in syn:  # acceptance is what the synthetic drafter was asked for (its oracle makes its timing meaningless)
        rep.check(f"synthetic drafter acceptance ~ alpha (k={r['k']})", abs(r["alpha"] - 0.8) < 0.15,
                  f"alpha={r['alpha']:.2f}")


def compile_path(rep: Report, args: argparse.Namespace, target: Any, device: torch.device) -> None:
    """Plain decoding through labkit's static cache, eager vs compiled (CUDA graphs on GPU); same tokens?"""
    from labkit.core.engine import SpeculativeDecoder

    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, target.config.get_text_config().vocab_size, (24,), generator=g).to(device)
    n = args.max_new_tokens
    mode = args.compile_mode or ("reduce-overhead" if device.type == "cuda" else "default")
    runs: dict[str, list[float]] = {}
    outs = {}
    for label, cache, cm in [("eager dynamic", "dynamic", None), ("eager static", "static", None),
                             (f"compiled static ({mode})", "static", mode)]:
        dec = SpeculativeDecoder(target, None, k=0, cache=cache, compile_mode=cm)
        t0 = time.perf_counter()
        outs[label] = dec.generate(ids, max_new_tokens=n, eos_token_id=None).token_ids  # includes compilation
        rep.say(f"INFO {label}: first run {time.perf_counter() - t0:.1f}s")
        runs[label] = [_timed(lambda d=dec: d.generate(ids, max_new_tokens=n, eos_token_id=None), device)
                       for _ in range(args.repeats)]
    base = statistics.median(runs["eager dynamic"])
    for label, ts in runs.items():
        rep.say(f"INFO {label}: {n / statistics.median(ts):.1f} tok/s ({base / statistics.median(ts):.2f}x eager "
                f"dynamic), same tokens as eager dynamic: {outs[label] == outs['eager dynamic']}")
    same = outs["eager static"] == outs["eager dynamic"]
    if next(target.parameters()).dtype == torch.float32:
        rep.check("static cache gives the dynamic cache's tokens", same)
    else:  # bf16: other attention shapes may flip near-ties; worth seeing, not a failure
        rep.say(f"INFO static cache gives the dynamic cache's tokens (bf16): {same}")


def _timed(fn: Callable[[], Any], device: torch.device) -> float:
    from labkit.measure.bench import time_call

    return time_call(fn, device)[0]


# ----------------------------------------------------------------------------------------------- entry point


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m labkit.measure.gpu_check", description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--size", choices=("e2b", "tiny"), default=None, help="default: e2b on cuda, tiny elsewhere")
    ap.add_argument("--dtype", default=None, help="bf16 (default for e2b) or fp32 (default for tiny)")
    ap.add_argument("--ks", type=lambda x: [int(k) for k in x.split(",")], default=[0, 4, 8])
    ap.add_argument("--max-new-tokens", type=int, default=None, help="default 64 (e2b), 48 (tiny)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--compile-mode", default=None, help="torch.compile mode (default: reduce-overhead on cuda)")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--budget-s", type=float, default=270.0, help="sections that would not fit are skipped")
    ap.add_argument("--out", default=None, help="also write the bench JSON / CSV / HTML here")
    a = ap.parse_args(argv)
    a.size = a.size or ("e2b" if a.device.startswith("cuda") else "tiny")
    a.max_new_tokens = a.max_new_tokens or (64 if a.size == "e2b" else 48)
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    rep = Report(a.budget_s)
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here (pass --device cpu --size tiny for the CPU smoke run)", file=sys.stderr)
        return 2
    import transformers

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    rep.say(f"torch {torch.__version__}, transformers {transformers.__version__}, device {name}, size {a.size}")
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32, None: None}[a.dtype] or (
        torch.bfloat16 if a.size == "e2b" else torch.float32)
    rep.section("greedy equality on tiny fp32 models", lambda: check_greedy(rep, device))
    rep.section("lossless sampling rule on the device", lambda: check_sampling(rep, device))
    mb = 1024 if device.type == "cuda" else 64
    copy_gbps = rep.section("device copy rate", lambda: device_copy_gbps(device, mb))
    if copy_gbps:
        rep.say(f"INFO copy rate {copy_gbps:.1f} GB/s (read + write, {mb} MiB buffer)")
    pair = rep.section(f"build random {a.size} target + assistant",
                       lambda: e2b_like_pair(device, dtype) if a.size == "e2b" else tiny_pair_on(device, dtype))
    if pair is not None:
        target, assistant = pair
        from labkit.measure.timing import weight_bytes

        rep.say(f"INFO target weights read per token: {weight_bytes(target) / 1e6:.1f} MB "
                f"({sum(p.numel() for p in target.parameters()) / 1e6:.1f}M parameters in all)")
        result = rep.section("bench table (device-synchronized timing)",
                             lambda: bench_table(rep, a, target, assistant, device), need_s=60)
        if result:
            report_bandwidth(rep, result)
        if not a.no_compile:  # tiny Gemma 4's sliding window (8) is too short for a static cache
            model = target if a.size == "e2b" else tiny_pair_on(device, dtype, sliding_window=128)[0]
            rep.section("compile / CUDA-graph path", lambda: compile_path(rep, a, model, device), need_s=45)
    rep.say(f"done: {len(rep.failures)} failed" + (f" ({', '.join(rep.failures)})" if rep.failures else ""))
    return 1 if rep.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
