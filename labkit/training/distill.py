"""Self-distillation of an MTP drafter (``labkit.drafters.mtp``) from its target: what ``labkit train-mtp`` runs.

The data comes from the target itself (``training.data``), the loss and the held-out acceptance from unrolling the
head over it (``training.objective``), the steps from the ``Trainer`` (``training.trainer``). This module runs one
training in a folder: it guards the folder, builds (or continues) the head, checkpoints, and writes the drafter.

Files in ``--out``: data/*.safetensors (generated once, reused on --resume), checkpoint.safetensors + state.json
(head, optimizer, RNG; every --checkpoint-every steps), mtp.safetensors (the drafter, bf16) and eval.json.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from labkit.drafters.mtp.drafter import MTPDrafter
from labkit.drafters.mtp.network import MTPConfig, MTPHead
from labkit.drafters.mtp.weights import describe_target
from labkit.models.geometry import text_config
from labkit.models.load import Target
from labkit.training.config import TrainConfig
from labkit.training.data import aux_layers_for, build_vocab, labelled_positions, prepare_data
from labkit.training.trainer import OnStep, StepReport, Trainer


def fuse_layers_for(model: Any, cfg: TrainConfig) -> list[int]:
    """The features a fused head reads: the aux layers' inputs, then (``fuse_last``) the last hidden state, L."""
    layers, last = list(aux_layers_for(model, cfg.aux_layers)), text_config(model).num_hidden_layers
    return [i for i in layers if i != last] + [last] if cfg.fuse_last else layers


def init_config(start: MTPHead, fuse: list[int] | None, last: int) -> MTPConfig:
    """The config of a run that starts from ``start``: its own, with ``fuse`` features if asked for. An unfused
    head can start a fused one only if the fused features end with the last hidden state (see init_weights)."""
    have = start.config.fuse_layers
    if not fuse or have == fuse:
        if have and not fuse:
            raise ValueError(f"--init-from: that head is fused (layers {have}); pass --fuse with the same layers")
        return start.config
    if have or fuse[-1] != last:
        raise ValueError(f"--init-from: a head reading {have or 'the last hidden state'} cannot start one that fuses "
                         f"layers {fuse}; pass --fuse-last (then the new head starts as the given one)")
    return replace(start.config, fuse_layers=list(fuse))


def init_weights(head: MTPHead, start: MTPHead) -> None:
    """Copy ``start`` into ``head``. A fused head started from an unfused one gets an fc that passes the last
    hidden state through and ignores the other layers (zero weights, which still get gradients): step 0 drafts
    exactly as ``start`` does, and training can only add what the low and middle layers know."""
    state = {k: v.float() for k, v in start.state_dict().items()}
    if head.config.fuse_layers and not start.config.fuse_layers:
        H = head.config.backbone_hidden
        fc = torch.zeros(H, len(head.config.fuse_layers) * H)
        fc[:, -H:] = torch.eye(H)
        state["fuse.weight"] = fc
    head.load_state_dict(state)


def new_trainer(cfg: TrainConfig, target: Target, out: Path, chunks: list[dict[str, torch.Tensor]],
                heldout: dict[str, torch.Tensor]) -> Trainer:
    """A Trainer for a fresh head on this data: its vocabulary from the data, or the ``init_from`` head's."""
    vocab_ids = build_vocab(chunks, cfg.vocab, target.vocab_size)
    fuse = fuse_layers_for(target.model, cfg) if cfg.fuse else None
    last = text_config(target.model).num_hidden_layers  # hidden_states[L]: the final normed state, data's "hidden"
    for d in [*chunks, heldout]:
        d.setdefault(f"hidden.{last}", d["hidden"])  # an alias in memory, no copy
    if fuse and (missing := [f"hidden.{i}" for i in fuse if f"hidden.{i}" not in chunks[0]]):
        raise ValueError(f"--fuse: the data in {out / 'data'} lacks {', '.join(missing)}; generate data that stores "
                         "those layers (--aux-layers) in a new --out folder")
    c = MTPConfig.for_target(target.model, layers=cfg.layers, hidden=cfg.hidden, intermediate=cfg.intermediate,
                             fuse_layers=fuse)
    start = None
    if cfg.init_from and not (out / "checkpoint.safetensors").exists():
        start = MTPDrafter.load(cfg.init_from).head
        c, vocab_ids = init_config(start, fuse, last), start.vocab_ids.clone()
    head = MTPHead(c, vocab_ids).train()
    if start is not None:
        init_weights(head, start)
    return Trainer(head, target, chunks, cfg, heldout)


def _check_out(out: Path, resume: bool, data_only: bool) -> None:
    started = (out / "state.json").exists() or (out / "data").exists()
    if started and not resume and not data_only:  # adding shards to a data folder is always a resume
        raise ValueError(f"--out: {out} already holds a training run; pass --resume to continue it, "
                         "or choose another folder")
    if resume and not started and not data_only:
        raise ValueError(f"--resume: {out} holds no training run to resume; drop --resume to start one")


def _progress(bar: Any) -> OnStep:
    def hook(trainer: Trainer, r: StepReport) -> None:
        bar.set_postfix(loss=f"{r.loss:.3f}", acc1=f"{r.match[0]:.2f}")
        bar.update()
        if r.heldout is not None:
            ev = r.heldout
            bar.write(f"step {r.step}: held-out greedy acceptance by position "
                      f"{[round(a, 3) for a in ev['acceptance_by_position']]}, mean acceptance length by k "
                      f"{ {k: round(v, 2) for k, v in ev['mean_acceptance_length'].items()} }")
    return hook


def _checkpoints(out: Path, cfg: TrainConfig, data_seconds: float) -> OnStep:
    def hook(trainer: Trainer, r: StepReport) -> None:
        if r.step % cfg.checkpoint_every == 0 or r.step == cfg.steps:
            trainer.save_checkpoint(out, data_seconds=data_seconds, config=asdict(cfg))
    return hook


def _finish(cfg: TrainConfig, target: Target, out: Path, trainer: Trainer, data_seconds: float) -> dict[str, Any]:
    """Write the drafter (bf16) and eval.json; returns the summary both hold."""
    drafter = MTPDrafter(trainer.head.eval(), describe_target(target), name=f"mtp({cfg.target})")
    final = trainer.evals[-1] if trainer.evals else trainer.evaluate()
    chunks = trainer.chunks
    summary = {"steps": trainer.step, "seed": cfg.seed, "train_seconds": round(trainer.train_seconds, 1),
               "data_seconds": round(data_seconds, 1),
               "data": {"sequences": sum(d["ids"].shape[0] for d in chunks), "positions": labelled_positions(chunks),
                        "temperatures": list(cfg.temperatures)},
               "vocab": int(trainer.head.vocab_ids.numel()), "heldout": final}
    drafter.save(out / "mtp.safetensors", extra={"training": summary})
    (out / "eval.json").write_text(json.dumps(summary, indent=1))
    return summary


def train(cfg: TrainConfig, target: Target | None = None, resume: bool = False, progress: bool = True,
          data_only: bool = False) -> dict[str, Any]:
    """Run (or resume) a training; returns the final state (with held-out evaluation). Deterministic per seed.

    ``data_only``: generate (or complete) the data shards and return their size without training.
    """
    from tqdm.auto import tqdm

    from labkit.models.load import load_target

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.fuse_last and not cfg.fuse:
        raise ValueError("--fuse-last: adds the last hidden state to a fused head's features; pass --fuse too")
    out = Path(cfg.out)
    _check_out(out, resume, data_only)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    if target is None:
        target = load_target(cfg.target, dtype=cfg.dtype, progress=progress)
    chunks, heldout, data_s = prepare_data(cfg, target, out, progress)
    if data_only:
        return {"data_seconds": round(data_s, 1), "shards": len(chunks), "positions": labelled_positions(chunks)}
    trainer = new_trainer(cfg, target, out, chunks, heldout)
    if resume and (out / "checkpoint.safetensors").exists():
        data_s += trainer.load_checkpoint(out).get("data_seconds", 0.0)
    bar = tqdm(total=cfg.steps, initial=trainer.step, desc="train-mtp", disable=not progress)
    trainer.run([_progress(bar), _checkpoints(out, cfg, data_s)])
    bar.close()
    return _finish(cfg, target, out, trainer, data_s)
