import os

import pytest
import torch

from labkit import tiny_pair

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def installed_or_skip(find, error: type[Exception], required_env: str):
    """``find()``'s answer (a binary, an install); where it is missing, skip, unless ``required_env`` is set (make
    test builds what it needs first: a missing one there is a failure, not a skip)."""
    try:
        return find()
    except error as e:
        if os.environ.get(required_env):
            raise
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models are pure Python overhead: one thread is fastest, and on a busy machine far faster."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def pair():
    """A tiny fp32 target (3 layers, vocabulary 32) and a tiny draft model (1 layer) sharing that vocabulary."""
    return tiny_pair(vocab_size=32, seed=0)


@pytest.fixture(scope="session")
def embedded_fp32():
    from labkit import load_target

    return load_target("gemma3-270m", dtype="fp32", device="cpu", progress=False)
