"""Notebook 03's tools: exact output distributions, sampled counts, chi-square, a biased argmax drafter."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from labkit.core.kvcache import crop, new_cache
from labkit.core.records import GenerationResult
from labkit.drafters.argmax import ArgmaxDrafter  # noqa: F401  (notebook 03 imports it from here)
from labkit.models.load import Target, as_target


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


def pearson(observed: Sequence[float], probs: Sequence[float], min_expected: float = 5.0) -> tuple[float, int, float]:
    """Pearson chi-square of counts against probabilities: (statistic, degrees of freedom, p-value).

    Cells expected fewer than ``min_expected`` times are pooled into one (the chi-square approximation needs it).
    A count in a cell of probability 0 is an outcome the target can never produce: p-value 0, whatever chi2 says.
    """
    from scipy.stats import chisquare  # imported here: scipy is slow to import and only this needs it

    obs = np.asarray(observed, dtype=np.float64).ravel()
    exp = np.asarray(probs, dtype=np.float64).ravel() * obs.sum()
    if obs[exp == 0].sum() > 0:
        return math.inf, 0, 0.0
    small = exp < min_expected
    o, e = np.append(obs[~small], obs[small].sum()), np.append(exp[~small], exp[small].sum())
    keep = e > 0
    o, e = o[keep], e[keep]
    if len(o) < 2:  # one cell: nothing to test
        return 0.0, 0, 1.0
    res = chisquare(o, e * o.sum() / e.sum())
    return float(res.statistic), len(o) - 1, float(res.pvalue)


def chi_square(counts: Counter, exact: dict[tuple, float], min_expected: float = 5.0) -> dict[str, float]:
    """Pearson chi-square of observed continuations against the exact distribution, and their TV distance."""
    n = sum(counts.values())
    outcomes = list(exact) + [s for s in counts if s not in exact]
    stat, dof, pval = pearson([counts.get(s, 0) for s in outcomes], [exact.get(s, 0.0) for s in outcomes],
                              min_expected)
    tv = 0.5 * sum(abs(counts.get(s, 0) / n - exact.get(s, 0.0)) for s in outcomes)
    return {"chi2": stat, "dof": dof, "p_value": pval, "tv_distance": tv, "samples": n}


def marginals(dist: dict[tuple, float] | Counter, position: int, vocab: int) -> list[float]:
    """The distribution of the token at ``position`` (from exact probabilities or observed counts)."""
    tot = sum(dist.values())
    out = [0.0] * vocab
    for s, v in dist.items():
        out[s[position]] += v / tot
    return out


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


def divergence_survey(target: Target, drafter: Any, prompts: Sequence[str], k: int = 4,
                      max_new_tokens: int = 48) -> list[dict[str, Any]]:
    """Greedy plain vs greedy speculative on each prompt: identical or not, and where and why they part.

    For a divergence, ``tie`` holds ``tie_report`` for the two competing tokens at the first differing position.
    """
    from labkit.core.engine import SpeculativeDecoder, plain_decoder

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
