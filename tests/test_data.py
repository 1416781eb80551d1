"""labkit.training.data: self-distillation shards that resume, greedy shards that do not repeat, fused features."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from labkit.models import as_target, tiny_model
from labkit.training.config import TrainConfig
from labkit.training.data import TOP, self_generate
from labkit.training.distill import train

pytestmark = pytest.mark.usefixtures("one_thread")


def target():
    return as_target(tiny_model(vocab_size=64, layers=2, hidden=32, seed=0), None)


def cfg(out, **kw) -> TrainConfig:
    base = dict(target="tiny", out=str(out), steps=1, data_batches=3, batch_size=4, new_tokens=12, heldout_tokens=8,
                vocab=24, temperatures=(0.0, 0.7))
    return TrainConfig(**{**base, **kw})


def test_data_only_writes_shards_and_resumes_the_missing_one(tmp_path):
    t = target()
    summary = train(cfg(tmp_path), target=t, progress=False, data_only=True)
    assert summary["shards"] == 3 and summary["positions"] == 3 * 4 * 13
    shards = sorted((tmp_path / "data").glob("train-*.safetensors"))
    assert len(shards) == 3 and not list((tmp_path / "data").glob("*.tmp"))
    before = load_file(str(shards[1]))
    shards[1].unlink()  # as if the run had been interrupted while writing shard 2
    train(cfg(tmp_path), target=t, progress=False, data_only=True)
    after = load_file(str(shards[1]))
    assert all(torch.equal(before[k], after[k]) for k in before)
    # more shards later: the folder grows, nothing is regenerated
    mtime = shards[0].stat().st_mtime_ns
    assert train(cfg(tmp_path, data_batches=4), target=t, progress=False, data_only=True)["shards"] == 4
    assert shards[0].stat().st_mtime_ns == mtime


def test_greedy_shards_vary_with_a_sampled_prefix():
    """Greedy continuations of one prompt are copies; a sampled prefix of a few tokens makes them differ."""
    t = target()
    prompts = [[5, 6, 7, 8]] * 6
    plain = self_generate(t, prompts, 10, 0.0, seed=0, progress=False)
    assert all(torch.equal(plain["ids"][0], row) for row in plain["ids"])
    varied = self_generate(t, prompts, 10, 0.0, seed=0, progress=False, sampled_prefix=torch.full((6,), 3))
    assert len({tuple(r.tolist()) for r in varied["ids"]}) > 1
    # after the prefix the rows are greedy: each new token is the target's top-1 at the previous position
    P = int(varied["prompt_len"])
    ids, top = varied["ids"], varied["top_ids"]
    assert torch.equal(ids[:, P + 3:], top[:, P + 2:-1, 0].long())
    assert top.shape[-1] == TOP


def test_fused_layer_features_are_the_targets_own_layer_inputs():
    """hidden.<i> is the input of target layer i at every position: a forward over the whole sequence agrees."""
    from labkit.training.data import aux_layers_for

    t = target()
    assert aux_layers_for(t.model, None) == (0, 1)  # EAGLE-3's (2, L // 2, L - 3), clipped to a 2-layer target
    d = self_generate(t, [[5, 6, 7, 8], [9, 10]], 6, 0.7, seed=1, progress=False, aux_layers=(1,))
    assert set(d) >= {"hidden", "hidden.1"} and d["hidden.1"].shape == d["hidden"].shape
    row = 1  # left-padded: compare the real tokens only
    start = int(d["start"][row])
    with torch.no_grad():
        ref = t.model(input_ids=d["ids"][row:row + 1, start:], output_hidden_states=True).hidden_states[1]
    got = d["hidden.1"][row, start:].float()
    assert torch.allclose(got, ref[0].float(), atol=0.05 * ref.abs().max().item())
