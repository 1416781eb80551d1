"""Sampling through any drafter must give exactly the target's distribution (χ² over 20,000 seeded draws of three
tokens with k = 2: both draft positions of a round are tested, see lossless.py).

Negative controls run the same test and must fail it: a verifier that accepts every draft, a drafter that
proposes its argmax while reporting its full distribution q, and one that does so only for its second draft (which
a two-token test never sees).
"""

from functools import partial

import pytest
import torch

from labkit import SpeculativeDecoder, tiny_model
from labkit.core.acceptance import accept_all_verify
from labkit.core.sampling import SamplingConfig
from labkit.drafters import ArgmaxDrafter, DraftModelDrafter, EarlyExitDrafter, NGramDrafter, SyntheticDrafter
from lossless import DRAWS, draw_tokens, exact_tokens, is_lossless, pvalues

V = 8
PROMPT = [1, 3, 4, 5, 3, 4]  # repeats "3 4" so the n-gram drafter has something to propose
SETTINGS = {"T=1.0": SamplingConfig(1.0), "T=0.7,top_k=5,top_p=0.9": SamplingConfig(0.7, 5, 0.9)}


def target_model():
    return tiny_model(V, layers=3, hidden=48, seed=0)


def draft_model():
    return tiny_model(V, layers=1, hidden=32, seed=1)


class SecondArgmaxDrafter(DraftModelDrafter):
    """Broken only at draft position 2: its first draft is a true draw from q, its second the argmax."""

    def propose(self, ctx, k, sampler):
        self.step = 0
        return super().propose(ctx, k, sampler)

    def pick(self, logits, sampler, ctx):
        self.step += 1
        tok, q = sampler.pick(logits)
        return (logits.argmax(-1, keepdim=True) if self.step == 2 else tok), q


def build(kind: str, verifier=None):
    target = target_model()
    drafter = {
        "draft-model": lambda: DraftModelDrafter(draft_model()),
        "ngram": lambda: NGramDrafter(2),
        "early-exit": lambda: EarlyExitDrafter(1),
        "synthetic": lambda: SyntheticDrafter(0.6),
        "argmax-draft-model": lambda: ArgmaxDrafter(draft_model()),
        "second-argmax-draft-model": lambda: SecondArgmaxDrafter(draft_model()),
    }[kind]()
    return SpeculativeDecoder(target, drafter, k=2, verifier=verifier)


@pytest.fixture(scope="module")
def exact():
    with torch.inference_mode():
        m = target_model()
        return {name: exact_tokens(m, PROMPT, cfg) for name, cfg in SETTINGS.items()}


@pytest.mark.slow
@pytest.mark.parametrize("setting", list(SETTINGS))
@pytest.mark.parametrize("kind", ["draft-model", "ngram", "early-exit", "synthetic"])
def test_sampling_is_lossless(kind, setting, exact):
    counts = draw_tokens(partial(build, kind), PROMPT, SETTINGS[setting])
    assert counts.sum() == DRAWS
    assert is_lossless(counts, exact[setting]), pvalues(counts, exact[setting])


@pytest.mark.slow
@pytest.mark.parametrize("control", ["accept-all-verifier", "argmax-drafter", "second-draft-argmax"])
def test_negative_controls_fail(control, exact):
    factory = {"accept-all-verifier": partial(build, "draft-model", accept_all_verify),
               "argmax-drafter": partial(build, "argmax-draft-model"),
               "second-draft-argmax": partial(build, "second-argmax-draft-model")}[control]
    # A control only has to fail, and each fails by a wide margin (p = 0.0): a quarter of the draws keeps that
    # power at a quarter of the cost (the χ² draws are the slowest part of the suite).
    counts = draw_tokens(factory, PROMPT, SETTINGS["T=1.0"], draws=DRAWS // 4)
    assert counts.sum() == DRAWS // 4
    p = pvalues(counts, exact["T=1.0"])
    assert not is_lossless(counts, exact["T=1.0"]), p  # second-draft-argmax: measured p = 0.0 for both tests


def test_tiny_distribution_is_interesting(exact):
    """The test would be weak on a near-uniform or near-deterministic target."""
    p = exact["T=1.0"]
    assert p.shape == (V, V, V)
    assert abs(p.sum() - 1) < 1e-5  # float32 probabilities, summed in float64
    assert 0.05 < p.sum(2).max() < 0.8
    assert (p.sum(2) > 1e-3).sum() > 10 and (p > 1e-3).sum() > 50
