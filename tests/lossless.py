"""Shared χ² machinery for the lossless-sampling tests: the exact target distribution by enumeration vs draws.

Draws run in worker processes (spawned, one torch thread each): 20,000 generations per configuration is the
slowest part of the suite, and a tiny model's forward is pure Python overhead that parallelizes well.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable

import numpy as np
import torch
from scipy.stats import chisquare

from labkit.core.sampling import SamplingConfig, warp

DRAWS = 20_000
ALPHA = 1e-3  # false-alarm rate per test; seeds are fixed, so a pass or a fail is reproducible


@torch.inference_mode()
def exact_two_tokens(model, prompt: list[int], cfg: SamplingConfig) -> np.ndarray:
    """P(t1, t2 | prompt) under the warped target, enumerating every t1 in one batched forward."""
    ids = torch.tensor([prompt])
    p1 = warp(model(ids).logits[0, -1], cfg)
    V = p1.shape[0]
    both = torch.cat([ids.repeat(V, 1), torch.arange(V)[:, None]], dim=1)
    p2 = warp(model(both).logits[:, -1], cfg)
    return (p1[:, None] * p2).double().numpy()


def _draw_chunk(args) -> np.ndarray:
    build, prompt, cfg, seeds = args
    torch.set_num_threads(1)
    dec = build()
    V = dec.target.vocab_size
    counts = np.zeros((V, V))
    for s in seeds:
        out = dec.generate(prompt, max_new_tokens=2, temperature=cfg.temperature, top_k=cfg.top_k,
                           top_p=cfg.top_p, seed=s)
        counts[out.token_ids[0], out.token_ids[1]] += 1
    return counts


def draw_two_tokens(build: Callable, prompt: list[int], cfg: SamplingConfig, draws: int = DRAWS,
                    workers: int | None = None) -> np.ndarray:
    """Counts of (t1, t2) over seeded generations; ``build`` is a picklable zero-argument decoder factory."""
    workers = workers or max(1, min(4, os.cpu_count() or 1))
    chunks = [(build, prompt, cfg, range(w, draws, workers)) for w in range(workers)]
    if workers == 1:
        return _draw_chunk(chunks[0])
    with mp.get_context("spawn").Pool(workers) as pool:
        return sum(pool.map(_draw_chunk, chunks))


def chi2_pvalue(counts: np.ndarray, probs: np.ndarray, min_expected: float = 5.0) -> float:
    """Pearson χ² p-value; cells expected below ``min_expected`` are pooled into one."""
    n = counts.sum()
    exp = probs.ravel() * n
    obs = counts.ravel()
    if obs[exp == 0].sum() > 0:  # a pair the target can never produce: not lossless, whatever χ² says
        return 0.0
    small = exp < min_expected
    e = np.append(exp[~small], exp[small].sum())
    o = np.append(obs[~small], obs[small].sum())
    keep = e > 0
    return float(chisquare(o[keep], e[keep] * o[keep].sum() / e[keep].sum()).pvalue)
