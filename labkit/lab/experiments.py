"""The measurements the notebooks run, kept out of the notebooks so they read as narrative + calls.

Verify cost versus k and the machine's memory/compute rates (01), exact versus sampled output distributions and
the ways to break losslessness (03), near-tie divergence in bf16 (03), KV cache memory (05), the k sweep (06).
"""

from __future__ import annotations

from typing import Any

import torch

from labkit.models.load import Target


def cache_bytes(cache: Any) -> int:
    """Bytes held by a transformers cache (keys + values of every layer)."""
    if cache is None:
        return 0
    total = 0
    for layer in getattr(cache, "layers", []):
        for name in ("keys", "values"):
            t = getattr(layer, name, None)
            if isinstance(t, torch.Tensor):
                total += t.numel() * t.element_size()
    return total


def kv_bytes_per_token(model: Any) -> int:
    """KV cache bytes one token costs in ``model`` (all layers, keys + values), from its config."""
    cfg = getattr(model.config, "text_config", None) or model.config
    dtype_bytes = next(model.parameters()).element_size()
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    return 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * head_dim * dtype_bytes


def train_mtp_live(target: Target, out: str, steps: int, on_step: Any = None, check: Any = None,
                   eval_every: int = 10, **config: Any) -> dict[str, Any]:
    """A short self-distillation of an MTP head with a callback per step, for a live curve in a notebook.

    ``labkit train-mtp``'s Trainer (``training.trainer``: data from the target's own generations, chained unrolled
    loss, held-out greedy acceptance) with a hook that reports ``on_step(step, loss=..., acceptance=...)`` (step 0:
    the untrained head's acceptance) and calls ``check()`` between steps (a Stop button raises there).
    ``config`` overrides ``TrainConfig`` fields. Returns {"drafter", "heldout", "parts", "history", "evals"}.
    """
    from pathlib import Path

    from labkit.drafters.mtp.drafter import MTPDrafter
    from labkit.drafters.mtp.weights import describe_target
    from labkit.training.config import TrainConfig
    from labkit.training.data import prepare_data
    from labkit.training.distill import new_trainer

    cfg = TrainConfig(target=target.name, out=out, steps=steps, eval_every=eval_every, **config)
    torch.manual_seed(cfg.seed)
    chunks, heldout, _ = prepare_data(cfg, target, Path(out), progress=False)
    trainer = new_trainer(cfg, target, Path(out), chunks, heldout)

    def report(_: Any, r: Any) -> None:
        acceptance = r.heldout["acceptance_by_position"][0] if r.heldout is not None else None
        on_step(r.step, loss=r.loss, acceptance=acceptance)

    if on_step is not None:
        on_step(0, acceptance=trainer.record_eval()["acceptance_by_position"][0])
    trainer.run([report] if on_step is not None else [], check=check)
    drafter = MTPDrafter(trainer.head.eval(), describe_target(target), name="mtp(trained here)")
    return {"drafter": drafter, "heldout": heldout, "parts": trainer.parts, "history": trainer.history,
            "evals": trainer.evals}


def mtp_walkthrough(target: Target, drafter: Any, prompt: str, k: int = 3) -> list[dict[str, Any]]:
    """Run one real round of ``drafter`` (an MTPDrafter) and record what each part of the head read and produced.

    Rows: step, module, what it is, input shapes, output shape; the K/V rows say which target layer they come from.
    """
    from labkit.core.engine import SpeculativeDecoder
    from labkit.models.geometry import kv_source_layers

    drafter.begin(target, torch.tensor([0]))  # binds the head to this target (no state is kept between rounds)
    head = drafter._run
    rows: list[dict[str, Any]] = []
    step = {"n": 0}
    sources = kv_source_layers(target.model)

    def shape(x: Any) -> str:
        return "×".join(str(d) for d in x.shape) if isinstance(x, torch.Tensor) else type(x).__name__

    def hook(name: str, what: str):
        def fn(module: Any, args: tuple, kwargs: dict, out: Any) -> None:
            if name == "pre_projection":
                step["n"] += 1
            ins = [shape(a) for a in args if isinstance(a, torch.Tensor)]
            row = {"draft step": step["n"], "module": name, "what": what, "input": ", ".join(ins),
                   "output": shape(out)}
            if name.startswith("layers."):
                kind = head.config.layer_types[int(name.split(".")[1])]
                kv = args[1]
                row["what"] = (f"attends to target layer {sources[kind]}'s cached K/V ({kind}): "
                               f"K {shape(kv[0])}, no K/V of its own")
            rows.append(row)
        return fn

    handles = [head.pre_projection.register_forward_hook(
        hook("pre_projection", "concat(target embedding of last token, target hidden state) → head width"),
        with_kwargs=True)]
    for i, layer in enumerate(head.layers):
        handles.append(layer.register_forward_hook(hook(f"layers.{i}", ""), with_kwargs=True))
    handles.append(head.post_projection.register_forward_hook(
        hook("post_projection", "→ predicted next target hidden state (fed to the next step)"), with_kwargs=True))
    try:
        SpeculativeDecoder(target, drafter, k=k).generate(prompt, max_new_tokens=k + 1)
    finally:
        for h in handles:
            h.remove()
    return [r for r in rows if r["draft step"] <= k][: k * (len(head.layers) + 2)]


def mtp_shared_parts(target: Target, drafter: Any) -> dict[str, bool]:
    """What an MTPDrafter bound to ``target`` shares with it, by reference: the embedding module, the LM-head
    matrix (the same storage, not a copy), and the K/V cache (it keeps none of its own)."""
    drafter.begin(target, torch.tensor([0]))
    lm = target.model.get_output_embeddings().weight
    return {
        "embedding (same module)": drafter._embed is target.model.get_input_embeddings(),
        "LM head (same storage)": drafter._lm_head.data_ptr() == lm.data_ptr(),
        "KV cache (keeps none)": drafter.kv_length() is None,
    }
