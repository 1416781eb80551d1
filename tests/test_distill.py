"""labkit.training.distill: one training run in a folder (fused heads, resume, the folder guards)."""

import dataclasses
import json

import pytest
import torch

from labkit import SpeculativeDecoder
from labkit.drafters import HybridDrafter
from labkit.drafters.mtp.drafter import MTPDrafter
from labkit.training.distill import train
from mtp_tiny import PROMPTS, tiny_cfg, tiny_target

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_fused_head_learns_and_drafts_losslessly(tmp_path):
    """EAGLE-3-style input (the target's layer inputs fused by fc): it trains on data that stores those layers,
    the engine hands the drafter the same features, and greedy output equals plain greedy."""
    target = tiny_target()
    summary = train(tiny_cfg(tmp_path, fuse=True, aux_layers=(0, 1)), target=target, progress=False)
    drafter = MTPDrafter.load(tmp_path / "mtp.safetensors")
    assert drafter.head.config.fuse_layers == [0, 1] and drafter.hidden_layers == (0, 1)
    assert drafter.head.fuse.weight.shape == (32, 64)
    assert summary["heldout"]["acceptance_by_position"][0] > 0.3  # untrained: ~0.05
    accepted = 0
    for prompt in PROMPTS:
        plain = SpeculativeDecoder(target, None).generate(prompt, max_new_tokens=30)
        out = SpeculativeDecoder(target, drafter, k=3).generate(prompt, max_new_tokens=30)
        assert out.token_ids == plain.token_ids
        accepted += out.stats.counts.accepted
        hybrid = SpeculativeDecoder(target, HybridDrafter(drafter), k=3).generate(prompt, max_new_tokens=30)
        assert hybrid.token_ids == plain.token_ids  # the hybrid hands its fused fallback the same layers
    assert accepted > 0
    plain_data = tiny_cfg(tmp_path / "plain", aux_layers=(), steps=1, data_batches=1, batch_size=4)
    train(plain_data, target=target, progress=False, data_only=True)
    with pytest.raises(ValueError, match="lacks hidden.0, hidden.1"):  # data without those layers: one clear line
        train(dataclasses.replace(plain_data, fuse=True, aux_layers=(0, 1)), target=target, progress=False,
              resume=True)


def test_resume_continues_exactly(tmp_path):
    """10 steps + resume to 20 steps gives the weights of 20 uninterrupted steps."""
    target = tiny_target()
    kw = dict(steps=20, data_batches=1, batch_size=8, new_tokens=24, heldout_tokens=16, checkpoint_every=10)
    train(tiny_cfg(tmp_path / "a", **kw), target=target, progress=False)
    train(tiny_cfg(tmp_path / "b", **{**kw, "steps": 10}), target=target, progress=False)
    train(tiny_cfg(tmp_path / "b", **kw), target=target, progress=False, resume=True)
    a = MTPDrafter.load(tmp_path / "a" / "mtp.safetensors").head.state_dict()
    b = MTPDrafter.load(tmp_path / "b" / "mtp.safetensors").head.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    state = json.loads((tmp_path / "b" / "state.json").read_text())
    assert state["step"] == 20 and len(state["history"]) == 20


def test_resume_with_more_shards_keeps_the_checkpoint_vocabulary(tmp_path):
    """Shards added between runs must not change which tokens the resumed head scores."""
    from safetensors.torch import load_file

    from labkit.training.data import build_vocab
    from labkit.training.objective import TargetParts, evaluate

    target = tiny_target()
    kw = dict(data_batches=1, batch_size=8, new_tokens=24, heldout_tokens=16, checkpoint_every=5, vocab=12)
    train(tiny_cfg(tmp_path / "r", steps=5, **kw), target=target, progress=False)
    first = MTPDrafter.load(tmp_path / "r" / "mtp.safetensors").head.vocab_ids.clone()
    more = {**kw, "data_batches": 3, "temperatures": (1.0,)}
    summary = train(tiny_cfg(tmp_path / "r", steps=8, **more), target=target, progress=False, resume=True)
    chunks = [load_file(str(p)) for p in sorted((tmp_path / "r" / "data").glob("train-*.safetensors"))]
    assert len(chunks) == 3
    assert not torch.equal(build_vocab(chunks, 12, target.vocab_size), first)  # the guard has work to do
    head = MTPDrafter.load(tmp_path / "r" / "mtp.safetensors").head.float()
    assert torch.equal(head.vocab_ids, first)
    # the resumed run trained and evaluated on the rows of the vocabulary it saved
    heldout = load_file(str(tmp_path / "r" / "data" / "heldout.safetensors"))
    ev = evaluate(head, heldout, TargetParts(target, head.vocab_ids), 4)
    assert ev["acceptance_by_position"] == pytest.approx(summary["heldout"]["acceptance_by_position"], abs=0.02)


def test_out_folder_guards(tmp_path):
    target = tiny_target()
    kw = dict(steps=2, data_batches=1, batch_size=4, new_tokens=8, heldout_tokens=8)
    with pytest.raises(ValueError, match="holds no training run"):
        train(tiny_cfg(tmp_path / "none", **kw), target=target, progress=False, resume=True)
    train(tiny_cfg(tmp_path / "run", **kw), target=target, progress=False)
    with pytest.raises(ValueError, match="pass --resume"):
        train(tiny_cfg(tmp_path / "run", **kw), target=target, progress=False)

