"""What quantizing the target does to speculative decoding (notebook 09): KL, greedy agreement, acceptance, recovery.

Quantization here is round-to-nearest, symmetric, group-wise (what GGUF's Q8_0 / Q4_0 do): every run of ``group``
consecutive weights along a row shares one scale, amax / qmax, and each weight becomes round(w / scale) clamped to
the signed ``bits``-bit range. The weights are stored back dequantized in the model's dtype ("fake quantization"):
the numbers are exactly those an int8 / int4 kernel would multiply, the speed is that of bf16. Every decoder
linear layer and the tied embedding / LM head are quantized; norms stay as they are.

torchao was tried first (torch 2.13, CPU): its int8 weight-only path works, its int4 path needs an extra kernel
package; one short method for both widths keeps the comparison like for like.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from labkit.measure.quality import divergence as divergence  # re-exported: notebook 09
from labkit.models.load import Target


@torch.no_grad()
def quantize_rtn(w: torch.Tensor, bits: int, group: int = 32, rows_per_chunk: int = 8192) -> torch.Tensor:
    """Round-to-nearest, symmetric, per group of ``group`` weights along the last dim; returned dequantized."""
    if bits not in (2, 3, 4, 5, 6, 8):
        raise ValueError(f"bits: must be one of 2, 3, 4, 5, 6, 8, got {bits!r}")
    if w.shape[-1] % group:
        raise ValueError(f"group: {group} must divide the row length {w.shape[-1]}")
    qmax = 2 ** (bits - 1) - 1
    out = torch.empty_like(w)
    flat, dst = w.reshape(-1, w.shape[-1]), out.reshape(-1, w.shape[-1])
    for i in range(0, flat.shape[0], rows_per_chunk):  # fp32 in chunks: the 262k-row embedding would need 670 MB
        g = flat[i: i + rows_per_chunk].float().reshape(-1, group)
        scale = (g.abs().amax(dim=1, keepdim=True) / qmax).clamp_min(1e-12)
        q = (g / scale).round().clamp(-qmax - 1, qmax)
        dst[i: i + rows_per_chunk] = (q * scale).reshape(-1, w.shape[-1]).to(w.dtype)
    return out


def quantized_copy(target: Target, bits: int, group: int = 32) -> Target:
    """A copy of ``target`` whose linear layers and embedding / LM head hold ``bits``-bit RTN weights."""
    model = copy.deepcopy(target.model)
    weights = [m.weight for m in model.model.layers.modules() if isinstance(m, torch.nn.Linear)]
    weights.append(model.get_input_embeddings().weight)
    if model.get_output_embeddings().weight is not weights[-1]:
        weights.append(model.get_output_embeddings().weight)
    for w in weights:
        w.data.copy_(quantize_rtn(w.data, bits, group))
    return Target(model.eval(), target.tokenizer, f"{target.name} int{bits}")


def int_weight_bytes(model: Any, bits: int, group: int = 32, scale_bytes: int = 2) -> int:
    """Bytes an int kernel would read for the quantized weights (values + one scale per group), the rest as is."""
    from labkit.measure.timing import weight_bytes

    quantized = sum(m.weight.numel() for m in model.model.layers.modules() if isinstance(m, torch.nn.Linear))
    quantized += model.get_output_embeddings().weight.numel()
    dtype_bytes = next(model.parameters()).element_size()
    return int(weight_bytes(model) - quantized * dtype_bytes + quantized * (bits / 8 + scale_bytes / group))


def finetune_head(drafter: Any, target: Target, steps: int, sequences: int = 32, new_tokens: int = 48,
                  heldout_sequences: int = 16, heldout_tokens: int = 40, eval_k: int = 4, lr: float = 3e-4,
                  train_batch: int = 8, reference: Target | None = None, seed: int = 0,
                  progress: bool = False) -> dict[str, Any]:
    """Fine-tune a copy of ``drafter``'s MTP head on ``target``'s own greedy text (the pieces of ``labkit train-mtp``:
    self_generate, the Trainer, evaluate); held-out greedy acceptance before and after.

    With ``reference`` (the model the head was trained for), the untouched head is also evaluated on the
    reference's own held-out text (same seed prompts): the acceptance the quantization took away.
    Returns {"drafter": the fine-tuned MTPDrafter, "before", "after", "reference": evaluate() results, "losses"}.
    """
    from labkit.drafters.mtp.drafter import MTPDrafter
    from labkit.drafters.mtp.weights import describe_target
    from labkit.training.config import TrainConfig
    from labkit.training.data import seed_prompts, self_generate
    from labkit.training.objective import TargetParts, evaluate
    from labkit.training.trainer import Trainer

    torch.manual_seed(seed)
    prefix = torch.randint(0, 9, (sequences,), generator=torch.Generator().manual_seed(seed))  # varied greedy rows
    chunks = [self_generate(target, seed_prompts(target, False, sequences, seed), new_tokens, 0.0, seed,
                            progress=progress, sampled_prefix=prefix)]

    def heldout_of(t: Target) -> dict[str, torch.Tensor]:
        return self_generate(t, seed_prompts(t, True, heldout_sequences, seed), heldout_tokens, 0.0, seed,
                             progress=progress)

    head = copy.deepcopy(drafter.head).float()
    ref = None
    if reference is not None:
        ref = evaluate(head, heldout_of(reference), TargetParts(reference, head.vocab_ids), eval_k)
    heldout = heldout_of(target)
    cfg = TrainConfig(target=target.name, steps=steps, seed=seed, lr=lr, warmup=max(1, steps // 10),
                      train_batch=train_batch, eval_k=eval_k)
    trainer = Trainer(head, target, chunks, cfg)
    before = trainer.evaluate(heldout)
    trainer.run()
    after = trainer.evaluate(heldout)
    tuned = MTPDrafter(head.eval(), describe_target(target), name=f"mtp(tuned on {target.name})")
    return {"drafter": tuned, "before": before, "after": after, "reference": ref,
            "losses": [h["loss"] for h in trainer.history]}
