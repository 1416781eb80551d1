"""Shared χ² machinery for the lossless-sampling tests: the exact target distribution by enumeration vs draws.

Each generation makes THREE tokens with k = 2, so the first round drafts two: the second draft (a draft model's
own cache one step on, the MTP head's chained hidden state, the assistant's fixed position id) and the verifier's
second position are both tested. The same draws are tested twice (Bonferroni: each at ALPHA / 2): the (t1, t2)
marginal over V² cells keeps the power the two-token test had at the first position, the (t1, t2, t3) joint
over V³ cells adds the second. The third token costs ~1.35x per draw (measured: 6.5 -> 9.1 ms CPU per draw on
the draft-model case), far cheaper than a separate run.

Draws run in worker processes (spawned, one torch thread each): 20,000 generations per configuration is the
slowest part of the suite, and a tiny model's forward is pure Python overhead that parallelizes well.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable

import numpy as np
import torch

from labkit.core.sampling import SamplingConfig, warp
from labkit.lab.lossless import pearson

DRAWS = 20_000
ALPHA = 1e-3  # false-alarm rate per configuration; seeds are fixed, so a pass or a fail is reproducible
TOKENS = 3  # with k = 2: two drafts in the first round


@torch.inference_mode()
def exact_tokens(model, prompt: list[int], cfg: SamplingConfig, n: int = TOKENS) -> np.ndarray:
    """P(t1 .. tn | prompt) under the warped target as an array [V] * n, one batched forward per position."""
    ids = torch.tensor([prompt])
    probs = warp(model(ids).logits[0, -1], cfg).double()  # [V]
    V = probs.shape[0]
    for _ in range(n - 1):
        prefixes = torch.cartesian_prod(*[torch.arange(V)] * probs.dim()).reshape(-1, probs.dim())
        batch = torch.cat([ids.repeat(prefixes.shape[0], 1), prefixes], dim=1)
        nxt = warp(model(batch).logits[:, -1], cfg).double().reshape(*probs.shape, V)
        probs = probs[..., None] * nxt
    return probs.numpy()


def exact_two_tokens(model, prompt: list[int], cfg: SamplingConfig) -> np.ndarray:
    return exact_tokens(model, prompt, cfg, 2)


def _draw_chunk(args) -> np.ndarray:
    build, prompt, cfg, seeds, n = args
    torch.set_num_threads(1)
    dec = build()
    V = dec.target.vocab_size
    counts = np.zeros((V,) * n)
    for s in seeds:
        out = dec.generate(prompt, max_new_tokens=n, temperature=cfg.temperature, top_k=cfg.top_k,
                           top_p=cfg.top_p, seed=s)
        counts[tuple(out.token_ids)] += 1
    return counts


def draw_tokens(build: Callable, prompt: list[int], cfg: SamplingConfig, draws: int = DRAWS, n: int = TOKENS,
                workers: int | None = None) -> np.ndarray:
    """Counts [V] * n of the first n tokens over seeded generations; ``build``: a picklable decoder factory."""
    workers = workers or max(1, min(4, os.cpu_count() or 1))
    chunks = [(build, prompt, cfg, range(w, draws, workers), n) for w in range(workers)]
    if workers == 1:
        return _draw_chunk(chunks[0])
    with mp.get_context("spawn").Pool(workers) as pool:
        return sum(pool.map(_draw_chunk, chunks))


def draw_two_tokens(build: Callable, prompt: list[int], cfg: SamplingConfig, draws: int = DRAWS,
                    workers: int | None = None) -> np.ndarray:
    return draw_tokens(build, prompt, cfg, draws, 2, workers)


def chi2_pvalue(counts: np.ndarray, probs: np.ndarray, min_expected: float = 5.0) -> float:
    """Pearson χ² p-value (labkit's one χ²: cells expected below ``min_expected`` pooled, impossible outcomes fail)."""
    return pearson(counts, probs, min_expected)[2]


def pvalues(counts: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """χ² p-values of the first two tokens (marginal) and of all of them (joint)."""
    rest = tuple(range(2, counts.ndim))
    return {"t1,t2": chi2_pvalue(counts.sum(axis=rest), probs.sum(axis=rest)), "joint": chi2_pvalue(counts, probs)}


def is_lossless(counts: np.ndarray, probs: np.ndarray) -> bool:
    """Both tests pass at ALPHA / 2 each: the false-alarm rate per configuration stays at most ALPHA."""
    return min(pvalues(counts, probs).values()) > ALPHA / 2
