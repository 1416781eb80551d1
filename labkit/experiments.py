"""The measurements the notebooks run, kept out of the notebooks so they read as narrative + calls.

Verify cost versus k and the machine's memory/compute rates (01), exact versus sampled output distributions and
the ways to break losslessness (03), near-tie divergence in bf16 (03), KV cache memory (05), the k sweep (06).
"""

from __future__ import annotations

import math
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import torch

from .drafters.base import DraftContext
from .drafters.draft_model import DraftModelDrafter
from .events import GenerationResult
from .kvcache import crop, new_cache
from .models import Target, as_target
from .sampling import Sampler

# ------------------------------------------------------------------------------------ speed: tok/s, alpha and c


def decode_seconds(result: GenerationResult) -> float:
    """Draft + verify time of every round: decoding without the prefill (which spec decoding does not change)."""
    return sum(r.draft_seconds + r.verify_seconds for r in result.rounds)


def decode_tps(results: GenerationResult | Sequence[GenerationResult]) -> float:
    """Decoding tokens per second, pooled over results."""
    rs = [results] if isinstance(results, GenerationResult) else list(results)
    secs = sum(decode_seconds(r) for r in rs)
    return sum(len(r.token_ids) for r in rs) / secs if secs > 0 else 0.0


def estimate_alpha_c(results: Sequence[GenerationResult]) -> tuple[float | None, float | None]:
    """Pooled acceptance rate alpha and draft/verify cost ratio c.

    alpha is the maximum-likelihood rate of i.i.d. acceptance: every drafted position the verifier looked at is
    a trial; it succeeds unless it is the round's first rejection (accepted / (accepted + rejections)).
    c is seconds per drafted token over seconds per verify forward.
    """
    acc = sum(r.accepted for res in results for r in res.rounds)
    rej = sum(r.rejected_at is not None for res in results for r in res.rounds)
    drafted = sum(len(r.drafted) for res in results for r in res.rounds)
    n = sum(len(res.rounds) for res in results)
    draft_s = sum(r.draft_seconds for res in results for r in res.rounds)
    verify_s = sum(r.verify_seconds for res in results for r in res.rounds)
    alpha = acc / (acc + rej) if acc + rej else None
    c = (draft_s / drafted) / (verify_s / n) if drafted and n and verify_s > 0 else None
    return alpha, c


def sweep_point(k: int, runs: Sequence[GenerationResult], base: Sequence[GenerationResult]) -> dict[str, Any]:
    """One point of a speed-vs-k sweep: speedup over plain decoding (k = 0) on the same prompts."""
    tps, base_tps = decode_tps(runs), decode_tps(base)
    alpha, c = estimate_alpha_c(runs) if k > 0 else (None, None)
    rounds = sum(len(r.rounds) for r in runs)
    return {"k": k, "tok_per_s": tps, "speedup": tps / base_tps if base_tps else float("nan"),
            "tokens_per_verify": sum(len(r.token_ids) for r in runs) / rounds if rounds else 0.0,
            "alpha": alpha, "c": c}


def compare(target: Any, drafters: dict[str, Any], prompts: Sequence[str], k: int = 4, max_new_tokens: int = 48,
            **gen: Any) -> list[dict[str, Any]]:
    """Each drafter (None = plain) on the same prompts: tokens/verify, acceptance, c, decode tok/s, speedup."""
    from .engine import SpeculativeDecoder

    SpeculativeDecoder(target, None).generate(prompts[0], max_new_tokens=4)  # warm-up: first calls are slower
    rows, base = [], None
    for name, drafter in drafters.items():
        dec = SpeculativeDecoder(target, drafter, k=k if drafter is not None else 0)
        runs = [dec.generate(p, max_new_tokens=max_new_tokens, **gen) for p in prompts]
        alpha, c = estimate_alpha_c(runs) if drafter is not None else (None, None)
        tps = decode_tps(runs)
        base = tps if drafter is None else base
        n_rounds = sum(len(r.rounds) for r in runs)
        rows.append({"drafter": name, "tokens_per_verify": sum(len(r.token_ids) for r in runs) / n_rounds,
                     "acceptance": alpha, "c": c, "tok_per_s": tps, "speedup": tps / base if base else None,
                     "results": runs})
    return rows


# ----------------------------------------------------------------------------- 01: what one verify forward costs


def sync(device: torch.device) -> None:
    """Wait for the device: timings read after it (a no-op on CPU, where work is done when the call returns)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def time_forward(target: Any, ks: Sequence[int], context: int = 100, repeats: int = 5) -> list[dict[str, Any]]:
    """Median ms of one target forward over k new tokens on top of ``context`` cached tokens (the verify step)."""
    t = as_target(target)
    dev = t.device
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(10, min(t.vocab_size, 30000), (context + max(ks),), generator=g).to(dev)
    cache = new_cache(t.model)
    t.model(input_ids=ids[None, :context], cache=cache, use_cache=True, logits_to_keep=1)
    rows = []
    for k in ks:
        x = ids[None, context: context + k]
        times = []
        for rep in range(repeats + 1):  # the first call of each shape warms up kernels and is not counted
            sync(dev)
            t0 = time.perf_counter()
            t.model(input_ids=x, cache=cache, use_cache=True)  # logits at all k positions, like verify
            sync(dev)
            if rep:
                times.append(time.perf_counter() - t0)
            crop(cache, context)
        rows.append({"k": k, "ms": 1e3 * statistics.median(times), "device": dev.type})
    return rows


def weight_bytes(model: Any) -> int:
    """Bytes of weights one decoding forward reads: every parameter once (a tied embedding / LM head counted once),
    except embedding tables that are only looked up (one row per token: e.g. Gemma 4's per-layer embeddings)."""
    head = model.get_output_embeddings()
    head_ptr = head.weight.data_ptr() if head is not None else None
    lookups = {m.weight.data_ptr() for m in model.modules() if isinstance(m, torch.nn.Embedding)} - {head_ptr}
    seen, total = set(lookups), 0
    for p in model.parameters():
        if p.data_ptr() not in seen:
            seen.add(p.data_ptr())
            total += p.numel() * p.element_size()
    return total


@torch.inference_mode()
def copy_bandwidth(device: str | torch.device = "cpu", megabytes: int = 256, repeats: int = 5) -> float:
    """Memory bandwidth in bytes/s from copying a big tensor (read + write both counted)."""
    dev = torch.device(device)
    src = torch.empty(megabytes * 2**20, dtype=torch.uint8, device=dev).fill_(1)
    dst = torch.empty_like(src)
    best = math.inf
    for _ in range(repeats + 1):
        sync(dev)
        t0 = time.perf_counter()
        dst.copy_(src)
        sync(dev)
        best = min(best, time.perf_counter() - t0)
    return 2 * src.numel() / best


@torch.inference_mode()
def matmul_rate(device: str | torch.device = "cpu", dtype: torch.dtype = torch.bfloat16, n: int = 1024,
                repeats: int = 3) -> float:
    """FLOP/s of a square matmul: the compute ceiling the k-token forward runs into."""
    dev = torch.device(device)
    a = torch.randn(n, n, device=dev).to(dtype)
    b = torch.randn(n, n, device=dev).to(dtype)
    best = math.inf
    for _ in range(repeats + 1):
        sync(dev)
        t0 = time.perf_counter()
        a @ b
        sync(dev)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


# ---------------------------------------------------------------------- 03: exact vs sampled output distributions


@torch.inference_mode()
def exact_distribution(model: Any, prompt: Sequence[int], n_new: int, temperature: float = 1.0) -> dict[tuple, float]:
    """P(the next ``n_new`` tokens) under the target, by enumerating every sequence (tiny vocabularies only)."""
    m = as_target(model).model
    out: dict[tuple, float] = {(): 1.0}
    for _ in range(n_new):
        nxt: dict[tuple, float] = {}
        seqs = list(out)
        batch = torch.tensor([list(prompt) + list(s) for s in seqs])
        probs = torch.softmax(m(input_ids=batch).logits[:, -1].float() / temperature, dim=-1)
        for s, row in zip(seqs, probs, strict=True):
            for tok, pr in enumerate(row.tolist()):
                nxt[s + (tok,)] = out[s] * pr
        out = nxt
    return out


def sample_outputs(decoder: Any, prompt: Sequence[int], n_new: int, samples: int, temperature: float = 1.0,
                   seed0: int = 0) -> Counter:
    """How often each continuation came out of ``decoder`` over ``samples`` seeds."""
    counts: Counter = Counter()
    for s in range(samples):
        res = decoder.generate(list(prompt), max_new_tokens=n_new, temperature=temperature, seed=seed0 + s)
        counts[tuple(res.token_ids)] += 1
    return counts


def chi_square(counts: Counter, exact: dict[tuple, float], min_expected: float = 5.0) -> dict[str, float]:
    """Pearson chi-square of observed counts against the exact distribution.

    Outcomes expected fewer than ``min_expected`` times are pooled into one bin (the test needs that). The p-value
    is the regularized upper incomplete gamma Q(dof/2, chi2/2), so no SciPy is needed.
    """
    n = sum(counts.values())
    big = {s: p for s, p in exact.items() if p * n >= min_expected}
    small_p = 1.0 - sum(big.values())
    bins = [(counts.get(s, 0), p * n) for s, p in big.items()]
    small_obs = n - sum(o for o, _ in bins)
    if small_p * n > 0 or small_obs:
        bins.append((small_obs, max(small_p, 1e-12) * n))
    stat = sum((o - e) ** 2 / e for o, e in bins)
    dof = len(bins) - 1
    pval = float(torch.special.gammaincc(torch.tensor(dof / 2, dtype=torch.float64),
                                          torch.tensor(stat / 2, dtype=torch.float64)))
    tv = 0.5 * sum(abs(counts.get(s, 0) / n - p) for s, p in exact.items())
    return {"chi2": stat, "dof": dof, "p_value": pval, "tv_distance": tv, "samples": n}


def marginals(dist: dict[tuple, float] | Counter, position: int, vocab: int) -> list[float]:
    """The distribution of the token at ``position`` (from exact probabilities or observed counts)."""
    tot = sum(dist.values())
    out = [0.0] * vocab
    for s, v in dist.items():
        out[s[position]] += v / tot
    return out


class ArgmaxDrafter(DraftModelDrafter):
    """A draft model that always proposes its argmax.

    ``honest=False`` reports the draft model's softmax as q although the token was not drawn from it (what an
    argmax drafter plugged into the sampling rule amounts to): output is no longer the target's distribution.
    ``honest=True`` reports q = one-hot, which is the truth for a deterministic proposal: lossless again.
    """

    def __init__(self, model: Any, honest: bool = False):
        super().__init__(model, name=f"argmax-draft({'one-hot q' if honest else 'softmax q'})")
        self.honest = honest

    def pick(self, logits: torch.Tensor, sampler: Sampler, ctx: DraftContext) -> tuple[torch.Tensor, torch.Tensor]:
        tok = logits.argmax(dim=-1, keepdim=True)
        _, probs = sampler.pick(logits)  # the warped distribution, as a sampled draft would report it
        if self.honest:
            probs = torch.nn.functional.one_hot(tok[0], probs.shape[-1]).to(probs.dtype)
        return tok, probs


# ----------------------------------------------------------------------------------- 03: bf16 near-tie divergence


def first_divergence(a: Sequence[int], b: Sequence[int]) -> int | None:
    """Index of the first differing token, or None if one is a prefix of the other."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return None


@torch.inference_mode()
def replay_logits(target: Target, result: GenerationResult, position: int) -> torch.Tensor:
    """The target's logits that decided new token ``position`` of ``result``, recomputed exactly as that run did:
    the same prefill, then the same forwards (one token each for plain decoding; pending + drafts for a verify),
    with the same rollbacks. In bf16 the chunking changes the arithmetic, so this is what each run really saw."""
    m = target.model
    ids = torch.tensor(result.prompt_ids + result.token_ids, device=target.device)
    P = len(result.prompt_ids)
    cache = new_cache(m)
    if P > 1:
        m(input_ids=ids[None, : P - 1], cache=cache, use_cache=True, logits_to_keep=1)
    for r in result.rounds:
        L = r.context_len
        inp = torch.cat([ids[L - 1: L], torch.tensor(r.drafted, dtype=torch.long, device=target.device)])
        logits = m(input_ids=inp[None], cache=cache, use_cache=True).logits[0]
        j = P + position - L  # row j of this forward predicts the token at absolute index L + j
        if 0 <= j < len(r.emitted):
            return logits[j].float()
        crop(cache, L + len(r.emitted) - 1)
    raise ValueError(f"position: {position} is not a new token of this result")


def tie_report(target: Target, plain: GenerationResult, spec: GenerationResult, position: int) -> dict[str, Any]:
    """At a position where two greedy runs chose different tokens: both tokens' logits as each run computed them."""
    a, b = plain.token_ids[position], spec.token_ids[position]
    lp, ls = replay_logits(target, plain, position), replay_logits(target, spec, position)
    return {
        "tokens": (a, b),
        "plain run": {a: float(lp[a]), b: float(lp[b])},
        "speculative run": {a: float(ls[a]), b: float(ls[b])},
        "max |difference| over the vocabulary": float((lp - ls).abs().max()),
    }


# --------------------------------------------------------------------------------------- 05: KV cache memory


def cache_bytes(cache: Any) -> int:
    """Bytes held by a transformers cache (keys + values of every layer)."""
    if cache is None:
        return 0
    total = 0
    for layer in getattr(cache, "layers", []):
        for name in ("keys", "values"):
            t = getattr(layer, name, None)
            if isinstance(t, torch.Tensor):
                total += t.numel() * t.element_size()
    return total


def kv_bytes_per_token(model: Any) -> int:
    """KV cache bytes one token costs in ``model`` (all layers, keys + values), from its config."""
    cfg = getattr(model.config, "text_config", None) or model.config
    dtype_bytes = next(model.parameters()).element_size()
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    return 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * head_dim * dtype_bytes


def divergence_survey(target: Target, drafter: Any, prompts: Sequence[str], k: int = 4,
                      max_new_tokens: int = 48) -> list[dict[str, Any]]:
    """Greedy plain vs greedy speculative on each prompt: identical or not, and where and why they part.

    For a divergence, ``tie`` holds ``tie_report`` for the two competing tokens at the first differing position.
    """
    from .engine import SpeculativeDecoder, plain_decoder

    plain, spec = plain_decoder(target), SpeculativeDecoder(target, drafter, k=k)
    rows = []
    for p in prompts:
        a = plain.generate(p, max_new_tokens=max_new_tokens)
        b = spec.generate(p, max_new_tokens=max_new_tokens)
        i = first_divergence(a.token_ids, b.token_ids)
        row: dict[str, Any] = {"prompt": p, "identical": a.token_ids == b.token_ids, "first_difference": i,
                               "plain": a, "spec": b, "tie": None}
        if i is not None:
            row["tokens"] = (a.token_ids[i], b.token_ids[i])
            row["tie"] = tie_report(target, a, b, i)
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------------- 07: a live MTP training


def train_mtp_live(target: Target, out: str, steps: int, on_step: Any = None, check: Any = None,
                   eval_every: int = 10, **config: Any) -> dict[str, Any]:
    """A short self-distillation of an MTP head with a callback per step, for a live curve in a notebook.

    The same pieces as ``labkit train-mtp`` (``labkit.train_mtp``: data from the target's own generations, chained
    unrolled loss, held-out greedy acceptance), in a loop that reports ``on_step(step, loss=..., acceptance=...)``
    and calls ``check()`` between steps (a Stop button raises there). ``config`` overrides ``TrainConfig`` fields.
    Returns {"drafter", "heldout", "parts", "history", "evals"}.
    """
    from pathlib import Path

    from .drafters.mtp import MTPConfig, MTPDrafter, MTPHead, describe_target
    from .train_mtp import TargetParts, TrainConfig, build_vocab, evaluate, prepare_data, train_step

    cfg = TrainConfig(target=target.name, out=out, steps=steps, eval_every=eval_every, **config)
    torch.manual_seed(cfg.seed)
    chunks, heldout, _ = prepare_data(cfg, target, Path(out), progress=False)
    vocab_ids = build_vocab(chunks, cfg.vocab, target.vocab_size)
    c = MTPConfig.for_target(target.model, layers=cfg.layers, hidden=cfg.hidden, intermediate=cfg.intermediate)
    head = MTPHead(c, vocab_ids).train()
    parts = TargetParts(target, vocab_ids)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=0.0, betas=(0.9, 0.95))
    h_scale = float(torch.cat([d["hidden"].float().pow(2).mean().reshape(1) for d in chunks]).mean())
    gen = torch.Generator().manual_seed(cfg.seed)
    history, evals = [], []

    def held_out(step: int) -> float:
        ev = evaluate(head, heldout, parts, cfg.eval_k)
        evals.append({"step": step, **ev})
        return ev["per_position_acceptance"][0]

    if on_step is not None:
        on_step(0, acceptance=held_out(0))
    for step in range(steps):
        if check is not None:
            check()
        loss, _ = train_step(head, opt, chunks, parts, c, cfg, step, gen, h_scale)
        history.append({"step": step + 1, "loss": loss.item()})
        acc = held_out(step + 1) if (step + 1) % eval_every == 0 or step + 1 == steps else None
        if on_step is not None:
            on_step(step + 1, loss=loss.item(), acceptance=acc)
    drafter = MTPDrafter(head.eval(), describe_target(target), name="mtp(trained here)")
    return {"drafter": drafter, "heldout": heldout, "parts": parts, "history": history, "evals": evals}


# ------------------------------------------------------------------------------------ 04: inside an MTP draft step


def mtp_walkthrough(target: Target, drafter: Any, prompt: str, k: int = 3) -> list[dict[str, Any]]:
    """Run one real round of ``drafter`` (an MTPDrafter) and record what each part of the head read and produced.

    Rows: step, module, what it is, input shapes, output shape; the K/V rows say which target layer they come from.
    """
    from .drafters.mtp import kv_source_layers
    from .engine import SpeculativeDecoder

    drafter.begin(target, torch.tensor([0]))  # binds the head to this target (no state is kept between rounds)
    head = drafter._run
    rows: list[dict[str, Any]] = []
    step = {"n": 0}
    sources = kv_source_layers(target.model)

    def shape(x: Any) -> str:
        return "×".join(str(d) for d in x.shape) if isinstance(x, torch.Tensor) else type(x).__name__

    def hook(name: str, what: str):
        def fn(module: Any, args: tuple, kwargs: dict, out: Any) -> None:
            if name == "pre_projection":
                step["n"] += 1
            ins = [shape(a) for a in args if isinstance(a, torch.Tensor)]
            row = {"draft step": step["n"], "module": name, "what": what, "input": ", ".join(ins),
                   "output": shape(out)}
            if name.startswith("layers."):
                kind = head.config.layer_types[int(name.split(".")[1])]
                kv = args[1]
                row["what"] = (f"attends to target layer {sources[kind]}'s cached K/V ({kind}): "
                               f"K {shape(kv[0])}, no K/V of its own")
            rows.append(row)
        return fn

    handles = [head.pre_projection.register_forward_hook(
        hook("pre_projection", "concat(target embedding of last token, target hidden state) → head width"),
        with_kwargs=True)]
    for i, layer in enumerate(head.layers):
        handles.append(layer.register_forward_hook(hook(f"layers.{i}", ""), with_kwargs=True))
    handles.append(head.post_projection.register_forward_hook(
        hook("post_projection", "→ predicted next target hidden state (fed to the next step)"), with_kwargs=True))
    try:
        SpeculativeDecoder(target, drafter, k=k).generate(prompt, max_new_tokens=k + 1)
    finally:
        for h in handles:
            h.remove()
    return [r for r in rows if r["draft step"] <= k][: k * (len(head.layers) + 2)]


def mtp_shared_parts(target: Target, drafter: Any) -> dict[str, bool]:
    """What an MTPDrafter bound to ``target`` shares with it, by reference: the embedding module, the LM-head
    matrix (the same storage, not a copy), and the K/V cache (it keeps none of its own)."""
    drafter.begin(target, torch.tensor([0]))
    lm = target.model.get_output_embeddings().weight
    return {
        "embedding (same module)": drafter._embed is target.model.get_input_embeddings(),
        "LM head (same storage)": drafter._lm_head.data_ptr() == lm.data_ptr(),
        "KV cache (keeps none)": drafter.kv_length() is None,
    }
