"""Sampling through any drafter must give exactly the target's distribution (χ² over 20,000 seeded draws).

Negative controls run the same test and must fail it: a verifier that accepts every draft, and a drafter that
proposes its argmax while reporting its full distribution q.
"""

from functools import partial

import pytest
import torch

from labkit import SpeculativeDecoder, tiny_model
from labkit.core.acceptance import accept_all_verify
from labkit.core.sampling import SamplingConfig
from labkit.drafters import DraftModelDrafter, EarlyExitDrafter, NGramDrafter, SyntheticDrafter
from lossless import ALPHA, chi2_pvalue, draw_two_tokens, exact_two_tokens

V = 8
PROMPT = [1, 3, 4, 5, 3, 4]  # repeats "3 4" so the n-gram drafter has something to propose
SETTINGS = {"T=1.0": SamplingConfig(1.0), "T=0.7,top_k=5,top_p=0.9": SamplingConfig(0.7, 5, 0.9)}


def target_model():
    return tiny_model(V, layers=3, hidden=48, seed=0)


def draft_model():
    return tiny_model(V, layers=1, hidden=32, seed=1)


class ArgmaxDrafter(DraftModelDrafter):
    """Broken on purpose: proposes argmax q but reports the full q, so p/q corrects for the wrong distribution."""

    def pick(self, logits, sampler, ctx):
        _, q = sampler.pick(logits)
        return logits.argmax(-1, keepdim=True), q


def build(kind: str, verifier=None):
    target = target_model()
    drafter = {
        "draft-model": lambda: DraftModelDrafter(draft_model()),
        "ngram": lambda: NGramDrafter(2),
        "early-exit": lambda: EarlyExitDrafter(1),
        "synthetic": lambda: SyntheticDrafter(0.6),
        "argmax-draft-model": lambda: ArgmaxDrafter(draft_model()),
    }[kind]()
    return SpeculativeDecoder(target, drafter, k=2, verifier=verifier)


@pytest.fixture(scope="module")
def exact():
    with torch.inference_mode():
        m = target_model()
        return {name: exact_two_tokens(m, PROMPT, cfg) for name, cfg in SETTINGS.items()}


@pytest.mark.slow
@pytest.mark.parametrize("setting", list(SETTINGS))
@pytest.mark.parametrize("kind", ["draft-model", "ngram", "early-exit", "synthetic"])
def test_sampling_is_lossless(kind, setting, exact):
    counts = draw_two_tokens(partial(build, kind), PROMPT, SETTINGS[setting])
    assert counts.sum() == 20_000
    assert chi2_pvalue(counts, exact[setting]) > ALPHA


@pytest.mark.slow
@pytest.mark.parametrize("control", ["accept-all-verifier", "argmax-drafter"])
def test_negative_controls_fail(control, exact):
    factory = (partial(build, "draft-model", accept_all_verify) if control == "accept-all-verifier"
               else partial(build, "argmax-draft-model"))
    counts = draw_two_tokens(factory, PROMPT, SETTINGS["T=1.0"])
    assert chi2_pvalue(counts, exact["T=1.0"]) < ALPHA


def test_tiny_distribution_is_interesting(exact):
    """The test would be weak on a near-uniform or near-deterministic target."""
    p = exact["T=1.0"]
    assert abs(p.sum() - 1) < 1e-5  # float32 probabilities, summed in float64
    assert 0.05 < p.max() < 0.8
    assert (p > 1e-3).sum() > 10
