"""A tiny target and a short training config shared by the MTP drafter and training tests."""

from labkit import tiny_model
from labkit.models.load import as_target
from labkit.training.config import TrainConfig

PROMPTS = [[1, 5, 7, 9, 3, 4, 6, 8, 10, 11, 12], [1, 20, 21, 22, 20, 21], [1, 30, 2, 9, 9, 9, 14, 27, 3, 8, 17, 6, 5]]


def tiny_target():
    return as_target(tiny_model(vocab_size=32, layers=2, hidden=32, seed=0), None)


def tiny_cfg(out, **kw) -> TrainConfig:
    base = dict(target="tiny", out=str(out), steps=150, data_batches=2, batch_size=16, new_tokens=48,
                heldout_tokens=48, vocab=24, train_batch=8, eval_every=1000, checkpoint_every=1000, lr=3e-3,
                warmup=10, eval_k=4)
    return TrainConfig(**{**base, **kw})

