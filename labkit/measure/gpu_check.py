"""A self-contained device check: correctness on tiny models, lossless sampling, speed at Gemma 4 E2B's real shapes.

``scripts/gpu_check.sh OUT_DIR`` runs it on one GPU in <= 5 minutes without downloading anything:

* greedy equality on tiny fp32 models: every drafter, dynamic and static cache, and compiled static-cache drafting;
* χ² of three sampled tokens with k = 2 (draft position 2) for the MTP head and the Gemma 4 assistant, on the device;
* a random Gemma 4 pair at E2B's real dimensions (head_dim 256, global_head_dim 512, 262k vocabulary, centroid
  head): plain vs the assistant vs labkit's MTP head vs transformers, and the bandwidth roofline;
* with HF_TOKEN and network: the real google/gemma-4-E2B-it + assistant on the bench prompts; else one line why not.

One table on stdout at the end, and gpu_check.json (plus the bench files) in OUT_DIR. ``--device cpu --size tiny``
runs it in a minute on a CPU. Exit status 1 when a correctness check fails (speed is reported, never asserted).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import socket
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from labkit.measure import theory

CATEGORIES = ("conversation", "code", "math")  # prompts are random ids here: three are enough for the table
REAL_TARGET, REAL_ASSISTANT = "google/gemma-4-E2B-it", "google/gemma-4-E2B-it-assistant"


class Report:
    """Collects PASS / FAIL / INFO lines (the final table and the JSON) and keeps the time budget."""

    def __init__(self, budget_s: float):
        self.t0 = time.perf_counter()
        self.budget_s = budget_s
        self.failures: list[str] = []
        self.rows: list[dict[str, Any]] = []  # {"section", "name", "status", "detail"}
        self.data: dict[str, Any] = {}  # measured numbers and results, for the JSON
        self._section = ""

    def left(self) -> float:
        return self.budget_s - (time.perf_counter() - self.t0)

    def say(self, text: str) -> None:
        print(f"[{time.perf_counter() - self.t0:6.1f}s] {text}", flush=True)

    def _row(self, status: str, name: str, detail: str) -> None:
        self.rows.append({"section": self._section, "name": name, "status": status, "detail": detail})

    def check(self, name: str, ok: bool, detail: str = "") -> None:
        self.say(f"{'PASS' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}")
        self._row("PASS" if ok else "FAIL", name, detail)
        if not ok:
            self.failures.append(name)

    def info(self, name: str, detail: str) -> None:
        self.say(f"INFO {name}: {detail}")
        self._row("INFO", name, detail)

    def section(self, name: str, fn: Callable[[], Any], need_s: float = 0.0) -> Any:
        self._section = name
        if self.left() < need_s:
            self.say(f"SKIP {name}: {self.left():.0f}s left of the budget, it needs ~{need_s:.0f}s")
            self._row("SKIP", name, f"{self.left():.0f}s left of the budget, needs ~{need_s:.0f}s")
            return None
        self.say(f"== {name}")
        try:
            return fn()
        except Exception as e:  # noqa: BLE001  (report and go on: the other sections still say something)
            self.check(name, False, f"{type(e).__name__}: {str(e)[:200]}")
            traceback.print_exc(limit=3)
            return None

    def table(self) -> str:
        """Every check and measurement, one line each."""
        w = max([len(r["name"]) for r in self.rows] + [10])
        lines = [f"{'status':<6}  {'check / measurement':<{w}}  detail", "-" * (w + 40)]
        lines += [f"{r['status']:<6}  {r['name']:<{w}}  {r['detail']}" for r in self.rows]
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- models


def e2b_like_pair(device: torch.device, dtype: torch.dtype) -> tuple[Any, Any]:
    """Random Gemma 4 target and assistant at E2B's real dimensions (35 layers, hidden 1536, head_dim 256 and
    global_head_dim 512, 20 KV-shared layers, per-layer embeddings, 262k vocabulary; a 4-layer assistant reading the
    target's K/V through a 2048-centroid head), built on the device."""
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


def tiny_drafters(device: torch.device) -> dict[str, tuple[Any, Any, int]]:
    """{name: (target, drafter, k)} on tiny fp32 models: every drafter labkit has, on a window long enough for the
    static cache (64); the Gemma 4 pair has unequal head sizes (16 sliding, 32 full), as the real one has.
    One k for all: the static cache's length (prompt + new tokens + k) is a compiled graph's shape, shared then."""
    from labkit.drafters import DraftModelDrafter, EarlyExitDrafter, NGramDrafter, SyntheticDrafter
    from labkit.drafters.gemma4_assistant import Gemma4AssistantDrafter
    from labkit.drafters.mtp.drafter import MTPDrafter
    from labkit.models.tiny import tiny_gemma4_pair, tiny_model

    t3 = tiny_model(64, layers=3, hidden=48, seed=1, sliding_window=64).to(device)
    d3 = tiny_model(64, layers=1, hidden=32, seed=2, sliding_window=64).to(device)
    t4, a4 = (m.to(device) for m in tiny_gemma4_pair(64, seed=0, sliding_window=64, global_head_dim=32))
    return {"ngram": (t3, NGramDrafter(3), 3), "draft-model": (t3, DraftModelDrafter(d3), 3),
            "early-exit": (t3, EarlyExitDrafter(1), 3), "synthetic": (t3, SyntheticDrafter(0.7), 3),
            "mtp (gemma3)": (t3, MTPDrafter.random_init(t3, seed=1), 3),
            "mtp (gemma4)": (t4, MTPDrafter.random_init(t4, seed=1), 3),
            "gemma4 assistant": (t4, Gemma4AssistantDrafter(a4), 3)}


def check_greedy(rep: Report, device: torch.device, compile_mode: str | None = None) -> None:
    """fp32 tiny models on the device: every drafter, dynamic / static cache (compiled static with ``compile_mode``)
    and transformers give the same greedy tokens."""
    from labkit.core.engine import SpeculativeDecoder
    from labkit.drafters.gemma4_assistant import Gemma4AssistantDrafter
    from labkit.models.tiny import tiny_gemma4_pair

    ids = torch.tensor([5, 6, 7, 8, 5, 6, 7, 8, 9, 10, 11], device=device)
    n = 24
    cases = tiny_drafters(device)
    plain: dict[int, list[int]] = {}
    for name, (target, drafter, k) in cases.items():
        if id(target) not in plain:
            plain[id(target)] = SpeculativeDecoder(target, None, k=0).generate(ids, max_new_tokens=n).token_ids
            family = "gemma4" if "gemma4" in name else "gemma3"
            if not compile_mode:
                rep.check(f"{family} tiny: labkit plain == transformers greedy", plain[id(target)] == _hf_greedy(
                    target, ids, n))
        caches = [("static", compile_mode)] if compile_mode else [("dynamic", None), ("static", None)]
        for cache, cm in caches:
            t0 = time.perf_counter()
            out = SpeculativeDecoder(target, drafter, k=k, cache=cache, compile_mode=cm).generate(ids, max_new_tokens=n)
            how = f"{cache} cache" + (f", compiled ({cm})" if cm else "")
            rep.check(f"{name} k={k} ({how}) == plain", out.token_ids == plain[id(target)],
                      f"{out.stats.counts.accepted} drafts accepted, {time.perf_counter() - t0:.1f}s")
    if compile_mode:
        return
    t4, a4 = (m.to(device) for m in tiny_gemma4_pair(vocab_size=64, seed=0))  # window 8: rollback past the window
    base4 = SpeculativeDecoder(t4, None, k=0).generate(ids, max_new_tokens=n).token_ids
    out = SpeculativeDecoder(t4, Gemma4AssistantDrafter(a4), k=3).generate(ids, max_new_tokens=n).token_ids
    rep.check("gemma4 tiny, window 8: labkit + assistant == plain", out == base4)
    rep.check("gemma4 tiny, window 8: transformers + assistant == greedy",
              _hf_greedy(t4, ids, n, assistant_model=a4) == base4)


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


@torch.inference_mode()
def exact_tokens(model: Any, prompt: list[int], cfg: Any, n: int = 3) -> torch.Tensor:
    """P(t1 .. tn | prompt) under the warped target, [V] * n in float64, one batched forward per position."""
    from labkit.core.sampling import warp

    dev = next(model.parameters()).device
    ids = torch.tensor([prompt], device=dev)
    probs = warp(model(ids).logits[0, -1], cfg).double()
    V = probs.shape[0]
    for _ in range(n - 1):
        prefixes = torch.cartesian_prod(*[torch.arange(V, device=dev)] * probs.dim()).reshape(-1, probs.dim())
        batch = torch.cat([ids.repeat(prefixes.shape[0], 1), prefixes], dim=1)
        probs = probs[..., None] * warp(model(batch).logits[:, -1], cfg).double().reshape(*probs.shape, V)
    return probs.cpu()


def check_lossless(rep: Report, device: torch.device, draws: int) -> None:
    """χ² of three sampled tokens with k = 2 on the device (the second draft of a round: the MTP head's chained
    state, the assistant's fixed position), the (t1, t2) marginal and the joint each at 1e-3 / 2."""
    from labkit.core.engine import SpeculativeDecoder
    from labkit.core.sampling import SamplingConfig
    from labkit.drafters.gemma4_assistant import Gemma4AssistantDrafter
    from labkit.drafters.mtp.drafter import MTPDrafter
    from labkit.lab.lossless import pearson
    from labkit.models.tiny import tiny_gemma4_pair, tiny_model

    V, prompt, cfg = 8, [1, 3, 4, 5, 3, 4], SamplingConfig(1.0)
    g3 = tiny_model(V, layers=2, hidden=32, seed=0).to(device)
    g4, a4 = (m.to(device) for m in tiny_gemma4_pair(V, seed=0, centroids=2, layers=2))
    for name, target, drafter in [("mtp head", g3, MTPDrafter.random_init(g3, seed=1, vocab_ids=torch.tensor(
            [0, 2, 3, 5, 6]))), ("gemma4 assistant", g4, Gemma4AssistantDrafter(a4))]:
        exact = exact_tokens(target, prompt, cfg)
        dec = SpeculativeDecoder(target, drafter, k=2)
        counts = torch.zeros_like(exact)
        t0 = time.perf_counter()
        for seed in range(draws):
            counts[tuple(dec.generate(prompt, max_new_tokens=3, temperature=1.0, seed=seed).token_ids)] += 1
        p2 = pearson(counts.sum(2).numpy(), exact.sum(2).numpy())[2]
        p3 = pearson(counts.numpy(), exact.numpy())[2]
        rep.check(f"{name}: 3 sampled tokens (k=2) ~ target", min(p2, p3) > 5e-4,
                  f"chi2 p={p2:.3g} (t1,t2), {p3:.3g} (joint); {draws} draws in {time.perf_counter() - t0:.0f}s")


# ----------------------------------------------------------------------------------------------- speed


def device_copy_gbps(device: torch.device, mbytes: int) -> float:
    import statistics

    from labkit.measure.timing import copy_rates

    return statistics.median(copy_rates(device, megabytes=mbytes)) / 1e9


def bench_table(rep: Report, args: argparse.Namespace, target: Any, assistant: Any, device: torch.device) -> dict:
    """labkit.measure.bench on the random pair: plain, n-gram, synthetic, the Gemma 4 assistant, labkit's MTP head
    (random weights: its cost, not its acceptance), vs transformers greedy and assisted generation."""
    from labkit.measure.bench import BenchSettings, Workload, _prompt_ids, run_bench
    from labkit.measure.report import format_table
    from labkit.models.load import Target

    ks = tuple(args.ks)
    drafted = ",".join(str(k) for k in ks if k)
    s = BenchSettings(model="random", device=str(device), drafters=("ngram", f"synthetic:0.8@{max(ks)}",
                      f"assistant@{drafted}", f"mtp@{drafted}"),
                      ks=ks, policies=(),  # fixed k only: its report compares k against k
                      hf_modes=("greedy", "prompt-lookup", f"assistant@{max(ks)}"), categories=CATEGORIES,
                      prompts_per_category=1, max_new_tokens=args.max_new_tokens, repeats=args.repeats,
                      threads=torch.get_num_threads(), progress=False,
                      quick=True)  # quick: "mtp" is a random head for this target (no shipped weights fit it)
    t = Target(target, None, f"random {args.size}")
    w = Workload(t, _prompt_ids(t, s), assistant)
    result = run_bench(s, args.out, workload=w)
    print(format_table(result), flush=True)
    return result


def report_bandwidth(rep: Report, result: dict) -> None:
    meta = result["meta"]
    overall = [r for r in result["rows"] if r["category"] == "all"]
    plain = next(r for r in overall if r["method"] == "plain")
    gbps = plain["end_to_end_tok_s"] * meta["weight_bytes"] / 1e9
    rep.info("roofline: labkit plain decoding", f"{plain['end_to_end_tok_s']:.1f} tok/s x "
             f"{meta['weight_bytes'] / 1e6:.1f} MB "
             f"of weights read per token = {gbps:.1f} GB/s, {100 * gbps / meta['copy_gbps']:.0f}% of the measured "
             f"copy rate ({meta['copy_gbps']:.0f} GB/s, read + write)")
    rep.data["roofline"] = {"plain_tok_s": plain["end_to_end_tok_s"], "weight_bytes": meta["weight_bytes"],
                            "achieved_gbps": gbps, "copy_gbps": meta["copy_gbps"]}
    for r in overall:
        if r["method"] in ("plain", "greedy", "assistant", "mtp"):
            rep.info(f"{r['engine']} {r['method']} k={r['k']}", f"{r['end_to_end_tok_s']:.1f} tok/s, "
                     f"{r['ratio_vs_hf_greedy']:.2f}x transformers greedy" + (
                         f", {r['tokens_per_verify']:.2f} tokens/verify" if r["tokens_per_verify"] else ""))
    for c in result["theory"]:
        rep.info(f"theory for {c['drafter']}", f"alpha={c['alpha']:.2f}, c={c['c']:.3f} -> best k={c['best_k']}, "
                 f"{theory.best_k(c['alpha'], c['c'], 16)[1]:.2f}x over plain")
    syn = [r for r in overall if r["method"].startswith("synthetic")]
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
        rep.info(f"plain, {label}", f"{n / statistics.median(ts):.1f} tok/s ({base / statistics.median(ts):.2f}x "
                 f"eager dynamic), same tokens as eager dynamic: {outs[label] == outs['eager dynamic']}")
    same = outs["eager static"] == outs["eager dynamic"]
    if next(target.parameters()).dtype == torch.float32:
        rep.check("static cache gives the dynamic cache's tokens", same)
    else:  # bf16: other attention shapes may flip near-ties; worth seeing, not a failure
        rep.info("static cache gives the dynamic cache's tokens (bf16)", str(same))


def _timed(fn: Callable[[], Any], device: torch.device) -> float:
    from labkit.measure.timing import time_call

    return time_call(fn, device)[0]


# ----------------------------------------------------------------------------------------------- the real pair


def load_real_pair(device: str | torch.device, target_id: str = REAL_TARGET,
                   assistant_id: str = REAL_ASSISTANT) -> tuple[Any, Any]:
    """The real Gemma 4 target and its assistant (local cache first, then the hub), on ``device`` in the device's
    default dtype. Raises ModelNotAvailableError with one line (gated: what to do; offline; missing)."""
    from labkit.drafters.gemma4_assistant import Gemma4AssistantDrafter
    from labkit.models.load import load_target

    target = load_target(target_id, device=device, progress=False)
    return target, Gemma4AssistantDrafter.load(assistant_id, dtype=target.dtype, device=str(device))


def real_pair_comparison(prompts: list[str], device: str | torch.device, k: int = 4, max_new_tokens: int = 64,
                         target_id: str = REAL_TARGET, assistant_id: str = REAL_ASSISTANT) -> dict[str, Any]:
    """Notebook 04's GPU cell: plain decoding vs the Gemma 4 assistant on ``prompts`` (greedy).

    Returns {"rows": one dict per drafter (tokens/verify, acceptance, c, tok/s, speedup), "acceptance_by_position",
    "same_tokens": whether the assistant's output equals plain decoding's on every prompt, "summary": a sentence
    chosen from the measured speedup}.
    """
    from labkit.measure.sweep import compare

    target, assistant = load_real_pair(device, target_id, assistant_id)
    rows = compare(target, {"plain": None, "Gemma 4 assistant": assistant}, prompts, k=k,
                   max_new_tokens=max_new_tokens)
    plain, spec = rows[0]["results"], rows[1]["results"]
    speedup = rows[1]["speedup"]
    verdict = ("faster than" if speedup > 1.05 else "slower than" if speedup < 0.95 else "about as fast as")
    return {"rows": [{key: v for key, v in r.items() if key != "results"} for r in rows],
            "acceptance_by_position": rows[1]["acceptance_by_position"],
            "same_tokens": all(a.token_ids == b.token_ids for a, b in zip(plain, spec, strict=True)),
            "summary": f"In this run the assistant (k={k}) was {verdict} plain decoding: {speedup:.2f}x, "
                       f"{rows[1]['tokens_per_verify']:.2f} tokens per target forward."}


def _hub_reachable(timeout: float = 3.0) -> bool:
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def real_bench(rep: Report, args: argparse.Namespace, device: torch.device) -> dict | None:
    """The real google/gemma-4-E2B-it + assistant on the bench prompts (one per category): labkit plain and with the
    assistant vs transformers greedy and assisted generation; speedup and acceptance by position."""
    from labkit.measure.bench import BenchSettings, Workload, _prompt_ids, run_bench
    from labkit.measure.prompts import CATEGORIES as ALL
    from labkit.measure.report import format_table

    target, assistant = load_real_pair(device)
    rep.info("real pair loaded", f"{REAL_TARGET} + {REAL_ASSISTANT}, {target.dtype}, {target.load_seconds:.0f}s")
    s = BenchSettings(model=REAL_TARGET, device=str(device), drafters=("assistant@4",), ks=(0, 4), policies=(),
                      hf_modes=("greedy", "assistant@4"), categories=ALL, prompts_per_category=1,
                      max_new_tokens=64, repeats=1, threads=torch.get_num_threads(), progress=False)
    w = Workload(target, _prompt_ids(target, s), assistant.model)
    result = run_bench(s, Path(args.out) / "real" if args.out else None, workload=w)
    print(format_table(result), flush=True)
    overall = {(r["engine"], r["method"]): r for r in result["rows"] if r["category"] == "all"}
    lab, hf = overall.get(("labkit", "assistant")), overall.get(("transformers", "assistant"))
    plain = overall[("labkit", "plain")]
    if lab:
        pos = ", ".join(f"{a:.2f}" for a in lab["acceptance_by_position"] or [])
        ratio = lab["end_to_end_tok_s"] / plain["end_to_end_tok_s"]
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


# ----------------------------------------------------------------------------------------------- entry point


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m labkit.measure.gpu_check", description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--size", choices=("e2b", "tiny"), default=None, help="default: e2b on cuda, tiny elsewhere")
    ap.add_argument("--dtype", default=None, help="bf16 / fp16 / fp32; default: the device's (e2b), fp32 (tiny)")
    ap.add_argument("--ks", type=lambda x: [int(k) for k in x.split(",")], default=[0, 4, 8])
    ap.add_argument("--max-new-tokens", type=int, default=None, help="default 64 (e2b), 48 (tiny)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--chi2-draws", type=int, default=None, help="per χ² check; default 1500 (cuda), 600 elsewhere")
    ap.add_argument("--compile-mode", default=None, help="torch.compile mode (default: reduce-overhead on cuda)")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--no-real", action="store_true", help="never load the real Gemma 4 E2B pair")
    ap.add_argument("--budget-s", type=float, default=270.0, help="sections that would not fit are skipped")
    ap.add_argument("--out", default=None, help="write gpu_check.json and the bench JSON / CSV / HTML here")
    a = ap.parse_args(argv)
    a.size = a.size or ("e2b" if a.device.startswith("cuda") else "tiny")
    a.max_new_tokens = a.max_new_tokens or (64 if a.size == "e2b" else 48)
    a.chi2_draws = a.chi2_draws or (1500 if a.device.startswith("cuda") else 600)
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
    rep.data["meta"] = {"torch": torch.__version__, "transformers": transformers.__version__, "device": name,
                        "size": a.size, "args": {k: v for k, v in vars(a).items()}}
    from labkit.models.load import default_dtype

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32, None: None}[a.dtype] or (
        default_dtype(device) if a.size == "e2b" else torch.float32)  # e2b: bf16, fp16 on a T4
    rep.section("greedy equality on tiny fp32 models", lambda: check_greedy(rep, device))
    rep.section("lossless sampling rule on the device", lambda: check_sampling(rep, device))
    rep.section("lossless sampling at draft position 2 on the device", lambda: check_lossless(rep, device,
                a.chi2_draws), need_s=30)
    mb = 1024 if device.type == "cuda" else 64
    copy_gbps = rep.section("device copy rate", lambda: device_copy_gbps(device, mb))
    if copy_gbps:
        rep.info("copy rate", f"{copy_gbps:.1f} GB/s (read + write, {mb} MiB buffer)")
        rep.data["copy_gbps"] = copy_gbps
    pair = rep.section(f"build random {a.size} target + assistant",
                       lambda: e2b_like_pair(device, dtype) if a.size == "e2b" else tiny_pair_on(device, dtype))
    if pair is not None:
        target, assistant = pair
        from labkit.measure.timing import weight_bytes

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
        del pair, target, assistant
    if not a.no_compile:  # last: each graph shape compiles once (a few per target; minutes with inductor)
        mode = a.compile_mode or ("reduce-overhead" if device.type == "cuda" else "eager")
        rep.section(f"compiled static-cache drafting on tiny fp32 models ({mode})",
                    lambda: check_greedy(rep, device, mode), need_s=60)
    why = "--no-real" if a.no_real else real_skip_reason()
    if why:
        rep.say(f"SKIP real {REAL_TARGET} + assistant: {why}")
        rep._section = "real Gemma 4 E2B"
        rep._row("SKIP", f"real {REAL_TARGET} + assistant", why)
        rep.data["real"] = {"skipped": why}
    else:
        rep.data["real"] = rep.section(f"real {REAL_TARGET} + assistant (bench prompts)",
                                       lambda: real_bench(rep, a, device))
    rep.say(f"done: {len(rep.failures)} failed" + (f" ({', '.join(rep.failures)})" if rep.failures else ""))
    print(rep.table(), flush=True)
    if a.out:
        Path(a.out).mkdir(parents=True, exist_ok=True)
        (Path(a.out) / "gpu_check.json").write_text(json.dumps(
            {"failures": rep.failures, "checks": rep.rows, **rep.data}, indent=1, default=str))
    return 1 if rep.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
