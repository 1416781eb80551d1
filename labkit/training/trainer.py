"""One Trainer for an MTP head: the optimizer, its schedule, the hidden-state scale, the step and the loop.

``labkit train-mtp`` (``training.distill``), notebook 07's live run (``lab.experiments.train_mtp_live``) and
notebook 09's fine-tuning (``lab.quantize.finetune_head``) all train through it, so one seed gives one sequence of
batches and one set of weights whichever of them runs. What differs between them (a progress bar, checkpoints, a
live curve, a Stop button) is passed in as hooks.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from labkit.drafters.mtp.network import MTPHead
from labkit.models.load import Target
from labkit.training.config import TrainConfig
from labkit.training.objective import TargetParts, batch_views, evaluate, unroll


@dataclass(frozen=True)
class StepReport:
    """What one optimizer step gives its hooks."""

    step: int  # optimizer steps taken so far (this one included)
    loss: float
    match: list[float]  # per unrolled step: the share of positions whose top-1 draft is the target's top-1
    heldout: dict[str, Any] | None  # the held-out evaluation made after this step, when one was due


OnStep = Callable[["Trainer", StepReport], None]


def hidden_scale(chunks: list[dict[str, torch.Tensor]]) -> float:
    """Mean square of the target's last hidden state (per chunk, then over chunks): the hidden-state regression
    divides by it, so its weight next to the cross-entropy does not depend on the target's hidden-state norm."""
    return float(torch.cat([d["hidden"].float().pow(2).mean().reshape(1) for d in chunks]).mean())


class Trainer:
    """Trains ``head`` on ``chunks`` (``training.data``) of ``target``'s own text; deterministic per ``cfg.seed``.

    ``heldout``: evaluate on it every ``cfg.eval_every`` steps and after the last one (kept in ``evals``).
    """

    def __init__(self, head: MTPHead, target: Target, chunks: list[dict[str, torch.Tensor]], cfg: TrainConfig,
                 heldout: dict[str, torch.Tensor] | None = None):
        self.head, self.target, self.chunks, self.cfg, self.heldout = head, target, chunks, cfg, heldout
        self.parts = TargetParts(target, head.vocab_ids.clone())
        self.opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=0.0, betas=(0.9, 0.95))
        self.h_scale = hidden_scale(chunks)
        self.gen = torch.Generator()  # reseeded at every step by train_step
        self.step = 0
        self.train_seconds = 0.0  # in optimizer steps only: evaluations and checkpoints are not training
        self.history: list[dict[str, Any]] = []
        self.evals: list[dict[str, Any]] = []

    def lr_at(self, step: int) -> float:
        """Linear warm-up, then cosine decay to 10%."""
        cfg = self.cfg
        if step < cfg.warmup:
            return cfg.lr * (step + 1) / cfg.warmup
        t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))

    def train_step(self, step: int) -> tuple[torch.Tensor, dict[str, Any]]:
        """One optimizer step on a random batch of one data chunk; returns the loss and unroll's statistics.

        The batch depends on (seed, step) only, so a resumed run draws exactly the batches of an uninterrupted one.
        """
        cfg, head = self.cfg, self.head
        self.gen.manual_seed(cfg.seed * 1_000_003 + step)
        d = self.chunks[int(torch.randint(len(self.chunks), (1,), generator=self.gen))]
        rows = torch.randperm(d["ids"].shape[0], generator=self.gen)[: cfg.train_batch]
        for group in self.opt.param_groups:
            group["lr"] = self.lr_at(step)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.autocast):
            b = batch_views(d, rows, self.parts, head.config, cfg.unroll, cfg.distill_top)
            loss, st = unroll(head, b, self.parts, cfg.unroll, cfg.reg_weight, self.h_scale)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(head.parameters(), 1.0)
        self.opt.step()
        return loss, st

    def evaluate(self, heldout: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
        """Greedy acceptance of the head now on ``heldout`` (default: the trainer's), k = ``cfg.eval_k``."""
        return evaluate(self.head, self.heldout if heldout is None else heldout, self.parts, self.cfg.eval_k)

    def record_eval(self) -> dict[str, Any]:
        """Evaluate on the held-out data and keep the result in ``evals`` under the current step."""
        ev = self.evaluate()
        self.evals.append({"step": self.step, **ev})
        return ev

    def run(self, on_step: Sequence[OnStep] = (), check: Callable[[], None] | None = None) -> None:
        """Steps until ``cfg.steps``. ``check()`` runs before each step (a Stop button raises there); each hook
        gets the trainer and the step's report after the step and its evaluation."""
        self.head.train()
        while self.step < self.cfg.steps:
            if check is not None:
                check()
            t0 = time.perf_counter()
            loss, st = self.train_step(self.step)
            self.step += 1
            self.train_seconds += time.perf_counter() - t0
            self.history.append({"step": self.step, "loss": loss.item(), "match": st["match"]})
            due = self.step % self.cfg.eval_every == 0 or self.step == self.cfg.steps
            report = StepReport(self.step, loss.item(), st["match"],
                                self.record_eval() if due and self.heldout is not None else None)
            for hook in on_step:
                hook(self, report)

    def save_checkpoint(self, out: Path, **extra: Any) -> None:
        """Atomic: head + optimizer moments + RNG as safetensors; step, history, evals and ``extra`` as JSON."""
        from safetensors.torch import save_file

        tensors = {f"head.{k}": v.contiguous() for k, v in self.head.state_dict().items()}
        steps = {}
        for i, p in enumerate(self.head.parameters()):
            st = self.opt.state.get(p, {})
            if st:
                tensors[f"opt.{i}.exp_avg"] = st["exp_avg"].contiguous()
                tensors[f"opt.{i}.exp_avg_sq"] = st["exp_avg_sq"].contiguous()
                steps[str(i)] = float(st["step"])
        tensors["rng.torch"] = torch.get_rng_state()
        tmp = out / "checkpoint.safetensors.tmp"
        save_file(tensors, str(tmp))
        os.replace(tmp, out / "checkpoint.safetensors")
        state = {"step": self.step, "train_seconds": self.train_seconds, "history": self.history,
                 "evals": self.evals, **extra, "opt_steps": steps}
        (out / "state.json.tmp").write_text(json.dumps(state, indent=1))
        os.replace(out / "state.json.tmp", out / "state.json")

    def load_checkpoint(self, out: Path) -> dict[str, Any]:
        """Continue from ``out``'s checkpoint: head (its vocabulary wins), optimizer, RNG, step, history, evals.
        Returns the saved state (with the ``extra`` it was saved with)."""
        from safetensors.torch import load_file

        t = load_file(str(out / "checkpoint.safetensors"))
        state = json.loads((out / "state.json").read_text())
        self.head.load_state_dict({k[5:]: v for k, v in t.items() if k.startswith("head.")})
        for i, p in enumerate(self.head.parameters()):
            if f"opt.{i}.exp_avg" in t:
                self.opt.state[p] = {"exp_avg": t[f"opt.{i}.exp_avg"], "exp_avg_sq": t[f"opt.{i}.exp_avg_sq"],
                                     "step": torch.tensor(state["opt_steps"][str(i)])}
        torch.set_rng_state(t["rng.torch"])
        # Shards added since the checkpoint would otherwise change which rows the head scores.
        self.parts = TargetParts(self.target, self.head.vocab_ids.clone())
        self.step, self.train_seconds = state["step"], state["train_seconds"]
        self.history, self.evals = state["history"], state["evals"]
        return state
