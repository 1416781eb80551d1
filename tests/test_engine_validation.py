"""Bad input gets a ValueError that names the parameter and what is allowed."""

import pytest

from labkit import MAX_K, SpeculativeDecoder, load_target, tiny_model
from labkit.drafters import DraftModelDrafter, NGramDrafter

PROMPT = [1, 2, 3]


@pytest.fixture(scope="module")
def dec(pair):
    return SpeculativeDecoder(pair[0], NGramDrafter(2), k=2)


@pytest.mark.parametrize("prompt", ["", [], __import__("torch").tensor([], dtype=__import__("torch").long)])
def test_empty_prompt(dec, prompt):
    with pytest.raises(ValueError, match="prompt"):
        dec.generate(prompt, max_new_tokens=2)


@pytest.mark.parametrize("k", [-1, MAX_K + 1, 2.5, "4"])
def test_bad_k(pair, k):
    with pytest.raises(ValueError, match=rf"k: must be an integer in 0\.\.{MAX_K}"):
        SpeculativeDecoder(pair[0], NGramDrafter(2), k=k)


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"temperature": -0.5}, "temperature"),
    ({"temperature": 1.0, "top_p": 0.0}, "top_p"),
    ({"temperature": 1.0, "top_p": 1.5}, "top_p"),
    ({"temperature": 1.0, "top_k": 0}, "top_k"),
    ({"max_new_tokens": 0}, "max_new_tokens"),
    ({"max_new_tokens": -3}, "max_new_tokens"),
    ({"k": 99}, "k"),
])
def test_bad_generation_arguments(dec, kwargs, name):
    kwargs = {"max_new_tokens": 4, **kwargs}
    with pytest.raises(ValueError, match=rf"^{name}: "):
        dec.generate(PROMPT, **kwargs)


def test_context_overflow(dec, pair):
    limit = pair[0].config.max_position_embeddings
    with pytest.raises(ValueError, match="max_new_tokens: .*context of"):
        dec.generate(PROMPT, max_new_tokens=limit)


def test_vocabulary_mismatch(pair):
    other = tiny_model(vocab_size=48, layers=1)
    with pytest.raises(ValueError, match="drafter: vocabulary size 48 differs from the target's 32"):
        SpeculativeDecoder(pair[0], DraftModelDrafter(other), k=2)


def test_token_ids_out_of_range(dec):
    with pytest.raises(ValueError, match="prompt: token ids"):
        dec.generate([1, 99], max_new_tokens=2)


def test_batch_prompt_rejected(dec):
    import torch

    with pytest.raises(ValueError, match="prompt: batch size must be 1"):
        dec.generate(torch.ones(2, 3, dtype=torch.long), max_new_tokens=2)


@pytest.mark.parametrize("name", ["gemma9", "", "no-such-model"])
def test_unknown_model_name(name):
    with pytest.raises(ValueError, match="model: "):
        load_target(name)


def test_unreachable_hub_id_is_one_clear_line(monkeypatch, tmp_path):
    from labkit.models.load import ModelNotAvailableError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(ModelNotAvailableError, match="not in the local cache") as e:
        load_target("google/gemma-4-E2B-it")
    assert "\n" not in str(e.value)


def test_bad_dtype():
    with pytest.raises(ValueError, match="dtype: "):
        load_target("gemma3-270m", dtype="int3")


@pytest.mark.parametrize(("args", "match"), [({"n": 0}, "n: "), ({"n": 2, "min_n": 3}, "min_n: ")])
def test_ngram_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        NGramDrafter(**args)
