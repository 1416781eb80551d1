"""The settings of one self-distillation run (``labkit train-mtp``): data, head, optimizer, evaluation.

No torch here: ``labkit.cli.train`` reads the defaults for its flags before any heavy import.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrainConfig:
    target: str = "gemma3-270m"
    out: str = "mtp-run"
    steps: int = 700  # defaults = the recipe of the shipped head (labkit/data/MODEL_CARD.md)
    seed: int = 0
    dtype: str = "bf16"  # of the target while generating data; the head trains in fp32
    data_batches: int = 37  # shards of batch_size sequences: 37 x 64 x 129 = 305k labelled positions
    batch_size: int = 64  # sequences generated in parallel
    new_tokens: int = 128
    temperatures: tuple[float, ...] = (0.0, 0.7, 1.0, 0.5)  # cycled over data batches
    heldout_tokens: int = 96
    distill_top: int = 32  # the target's top-n probabilities the loss distils on (data keeps TOP = 32)
    greedy_prefix: int = 8  # greedy shards: each row samples its first 0..greedy_prefix new tokens at T = 1
    # Target layers whose inputs the data also stores (hidden.<i>), for an EAGLE-3-style head that fuses low,
    # middle and high features; None = EAGLE-3's choice (2, L // 2, L - 3), () = only the last hidden state.
    aux_layers: tuple[int, ...] | None = None
    seed_set: str = "v1"  # seed prompts (labkit.training.seeds.SEED_SETS): v1 = the first head's; v2, summaries
    fuse: bool = False  # train an EAGLE-3-style head on those layers (needs data that stores them)
    fuse_last: bool = False  # the fused head also reads the last hidden state (the one the LM head scores)
    init_from: str | None = None  # start from this drafter's weights and vocabulary (e.g. the shipped head)
    vocab: int = 4096  # reduced vocabulary: the most frequent tokens of the generated text (+ context tokens)
    layers: int = 2
    hidden: int | None = None  # head width (default: the target's)
    intermediate: int | None = None
    unroll: int = 3
    train_batch: int = 8  # sequences per optimizer step (every position of each is a query)
    lr: float = 2e-3
    warmup: int = 30
    reg_weight: float = 0.5
    eval_every: int = 100
    checkpoint_every: int = 50
    eval_k: int = 6
    threads: int | None = None
    autocast: bool = True  # bf16 matmuls while training (fp32 weights and optimizer): ~1.7x faster on CPU
