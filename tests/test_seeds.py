"""labkit.training.seeds: many varied seed prompts, none of them an evaluation or held-out prompt."""

import pytest

from labkit.measure.prompts import prompt_set
from labkit.training.seeds import HELDOUT, SEED_SETS, TRAIN, TRAIN_AT_SCALE, TRAIN_AT_SCALE_V2


@pytest.mark.parametrize("seed_set", ["v1", "v2"])
def test_seed_prompts_at_scale_are_many_varied_and_disjoint(seed_set):
    seeds = SEED_SETS[seed_set]
    assert len(seeds) >= 1000 and len(set(seeds)) == len(seeds)
    assert sum("<start_of_turn>" in s for s in seeds) >= 100  # chat-formatted seeds
    evaluation = [p for ps in prompt_set().values() for p in ps]
    for seed in seeds:
        assert seed not in HELDOUT
        for e in evaluation:
            assert seed not in e and e not in seed


def test_summary_seeds_are_articles_with_a_cue_and_disjoint():
    """The summaries set: one templated article per topic and format, each ending in a summary cue; none is an
    evaluation or held-out prompt, nor contains one."""
    seeds = SEED_SETS["summaries"]
    assert len(seeds) >= 8 * 64 and len(set(seeds)) == len(seeds)
    assert all(s.rstrip().endswith(("Summary:", "TL;DR:", "In short:", "<start_of_turn>model")) for s in seeds)
    evaluation = [p for ps in prompt_set().values() for p in ps]
    for seed in seeds:
        assert seed not in HELDOUT and not any(seed in e or e in seed for e in evaluation)


def test_v2_seeds_add_translation_code_and_chat_and_keep_v1():
    """v1 stays the shipped head's recipe; v2 is v1 plus more of the formats with the lowest acceptance."""
    assert set(TRAIN_AT_SCALE) < set(TRAIN_AT_SCALE_V2)
    extra = set(TRAIN_AT_SCALE_V2) - set(TRAIN_AT_SCALE)
    assert sum("Translate" in s for s in extra) >= 4 * 64 and sum("<start_of_turn>" in s for s in extra) >= 64
    assert sum("def " in s or "const " in s for s in extra) >= 2 * 64


def test_seed_prompts_are_not_evaluation_prompts():
    evaluation = [p for ps in prompt_set().values() for p in ps]
    for seed in TRAIN + HELDOUT:
        for e in evaluation:
            assert seed not in e and e not in seed
    assert not set(TRAIN) & set(HELDOUT)

