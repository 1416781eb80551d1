"""labkit.training.trainer: one Trainer behind `labkit train-mtp`, notebook 07's live run and notebook 09's
fine-tuning."""

import json

import pytest
import torch

from labkit.drafters.mtp.drafter import MTPDrafter
from labkit.training.distill import train
from mtp_tiny import tiny_cfg, tiny_target

pytestmark = pytest.mark.usefixtures("one_thread")


def test_notebook_trainer_takes_the_same_steps_as_train_mtp(tmp_path):
    """train_mtp_live (notebook 07) and `labkit train-mtp` share the step: same data, seed, steps -> same weights."""
    from labkit.lab.experiments import train_mtp_live

    target = tiny_target()
    kw = dict(steps=6, data_batches=1, batch_size=8, new_tokens=24, heldout_tokens=16)
    train(tiny_cfg(tmp_path / "cli", **kw), target=target, progress=False)
    cfg = tiny_cfg(tmp_path / "nb", **kw)
    losses, stops = [], []
    live = train_mtp_live(target, cfg.out, steps=6, eval_every=3, check=lambda: stops.append(1),
                          on_step=lambda step, loss=None, acceptance=None: losses.append(loss),
                          **{k: v for k, v in vars(cfg).items() if k not in ("target", "out", "steps", "eval_every")})
    a = MTPDrafter.load(tmp_path / "cli" / "mtp.safetensors").head.state_dict()
    b = live["drafter"].head.state_dict()
    state = json.loads((tmp_path / "cli" / "state.json").read_text())
    assert [round(h["loss"], 5) for h in state["history"]] == [round(x, 5) for x in losses[1:]]
    # the file holds bf16: equal up to one bf16 rounding step
    assert all(torch.allclose(a[k].float(), b[k].float(), rtol=1e-2, atol=1e-2) for k in a)
    assert len(stops) == 6



def tiny_trainer(tmp_path, **kw):
    from labkit.training.data import prepare_data
    from labkit.training.distill import new_trainer

    target = tiny_target()
    cfg = tiny_cfg(tmp_path, **{**dict(steps=5, data_batches=1, batch_size=4, new_tokens=12, heldout_tokens=8,
                                       eval_every=2, warmup=2), **kw})
    torch.manual_seed(cfg.seed)
    chunks, heldout, _ = prepare_data(cfg, target, tmp_path, progress=False)
    return new_trainer(cfg, target, tmp_path, chunks, heldout)


def test_hidden_scale_is_the_mean_square_of_the_hidden_states(tmp_path):
    """One formula for the regression's scale: with one chunk, the mean square of its hidden states."""
    from labkit.training.trainer import hidden_scale

    trainer = tiny_trainer(tmp_path)
    one = trainer.chunks[0]
    assert trainer.h_scale == hidden_scale([one]) == float(one["hidden"].float().pow(2).mean())
    two = [one, {"hidden": one["hidden"] * 2}]
    assert hidden_scale(two) == pytest.approx(2.5 * trainer.h_scale)  # per chunk, then the mean: (1 + 4) / 2


def test_schedule_warms_up_then_decays_to_a_tenth(tmp_path):
    trainer = tiny_trainer(tmp_path, steps=10, warmup=2, lr=1e-3)
    lrs = [trainer.lr_at(s) for s in range(10)]
    assert lrs[:3] == pytest.approx([5e-4, 1e-3, 1e-3])
    assert all(b <= a for a, b in zip(lrs[2:], lrs[3:], strict=False)) and lrs[-1] > 1e-4
    assert trainer.lr_at(10) == pytest.approx(1e-4)


def test_run_checks_steps_evaluates_and_reports(tmp_path):
    """check() before every step; every hook after it, with the evaluation made at every eval_every and the last."""
    trainer = tiny_trainer(tmp_path)
    checks, reports = [], []
    trainer.run([lambda t, r: reports.append(r)], check=lambda: checks.append(trainer.step))
    assert checks == [0, 1, 2, 3, 4] and [r.step for r in reports] == [1, 2, 3, 4, 5]
    assert [r.step for r in reports if r.heldout is not None] == [2, 4, 5] == [e["step"] for e in trainer.evals]
    assert [h["loss"] for h in trainer.history] == [r.loss for r in reports]
    assert len(reports[0].match) == trainer.cfg.unroll and trainer.train_seconds > 0
    assert trainer.evals[-1] == {"step": 5, **trainer.evaluate()}  # evaluation changes nothing


def test_run_stops_where_check_raises(tmp_path):
    trainer = tiny_trainer(tmp_path)

    def stop_at_3() -> None:
        if trainer.step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        trainer.run(check=stop_at_3)
    assert trainer.step == 3 and len(trainer.history) == 3
