"""Correctness on the device: greedy equality for every drafter and cache, the lossless sampling rule, and χ² of
sampled tokens at draft position 2."""

from __future__ import annotations

import copy
import time
from typing import Any

import torch

from labkit.checks.pairs import tiny_drafters
from labkit.checks.report import Report


def _hf_greedy(model: Any, ids: torch.Tensor, n: int, **extra: Any) -> list[int]:
    gc = copy.deepcopy(model.generation_config)
    gc.update(do_sample=False, max_new_tokens=n, eos_token_id=None, pad_token_id=0, temperature=None, top_k=None,
              top_p=None, num_assistant_tokens=4, num_assistant_tokens_schedule="constant")
    x = ids[None]
    return model.generate(x, attention_mask=torch.ones_like(x), generation_config=gc, **extra)[0, ids.numel():].tolist()


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
