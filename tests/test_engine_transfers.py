"""A round reads the device once: at most one device-to-host transfer per round, greedy and sampling (issue 9).

On a GPU every host read of a tensor (``.item()``, ``int(t)``, ``bool(t)``, ``.tolist()``, ``torch.multinomial``'s
input checks, ``nonzero``...) makes the host wait for the device. On CPU nothing waits, so the reads are counted:
at the dispatcher (what C++ reads, e.g. inside multinomial, shows up there) and at the Python methods that copy a
tensor's values out without dispatching an op (``tolist``, ``cpu``, ``numpy``).
"""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from labkit import SpeculativeDecoder, tiny_model
from labkit.core.draft_length import ConfidenceStop, CostModel, Heuristic
from labkit.drafters import DraftModelDrafter, EarlyExitDrafter, NGramDrafter, SyntheticDrafter
from labkit.drafters.gemma4_assistant import Gemma4AssistantDrafter
from labkit.drafters.mtp.drafter import MTPDrafter
from labkit.models.load import as_target
from labkit.models.tiny import tiny_gemma4_pair

aten = torch.ops.aten
READS = {aten._local_scalar_dense.default, aten.item.default, aten.is_nonzero.default, aten.nonzero.default,
         aten.masked_select.default, aten.multinomial.default, aten.equal.default, aten.unique_consecutive.default,
         aten._unique2.default, aten.repeat_interleave.Tensor}
PROMPT = [1, 5, 9, 14, 3, 7, 22, 5, 9, 14, 30, 2, 11, 5, 9]


class HostReads(TorchDispatchMode):
    """Counts reads of tensor values on the host (each one a device sync on a GPU)."""

    def __init__(self):
        super().__init__()
        self.count, self.what = 0, []

    def note(self, name: str) -> None:
        self.count += 1
        self.what.append(name)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in READS:
            self.note(str(func))
        if func is aten.index.Tensor and any(i is not None and i.dtype == torch.bool for i in args[1]):
            self.note("boolean-mask indexing")  # a data-dependent shape: nonzero under the hood
        return func(*args, **kwargs)


@pytest.fixture
def reads(monkeypatch):
    mode = HostReads()
    for name in ("tolist", "cpu", "numpy"):
        method = getattr(torch.Tensor, name)

        def counted(self, *a, _method=method, _name=name, **kw):
            mode.note(_name)
            return _method(self, *a, **kw)

        monkeypatch.setattr(torch.Tensor, name, counted)
    with mode:
        yield mode


def per_round(decoder, reads, **kw) -> list[list[str]]:
    """What each round read, rounds 1.. (round 0's span also holds the prefill's reads of the prompt)."""
    seen = []

    def hook(record):
        seen.append(reads.what[:])
        reads.what.clear()

    decoder.add_hook(hook)
    out = decoder.generate(PROMPT, max_new_tokens=24, **kw)
    assert len(out.rounds) >= 4, "too few rounds to count"
    return seen[1:]


def drafters(pair):
    target, draft = pair
    return {
        "plain": None,
        "draft-model": DraftModelDrafter(draft),
        "early-exit": EarlyExitDrafter(1),
        "synthetic": SyntheticDrafter(0.7),
        "ngram": NGramDrafter(2),
        "mtp": MTPDrafter.random_init(as_target(target), layers=1, seed=0),
    }


@pytest.mark.parametrize("temperature", [0.0, 1.0])
@pytest.mark.parametrize("name", ["plain", "draft-model", "early-exit", "synthetic", "mtp"])
def test_one_host_transfer_per_round(pair, reads, name, temperature):
    decoder = SpeculativeDecoder(pair[0], drafters(pair)[name], k=3)
    for i, what in enumerate(per_round(decoder, reads, temperature=temperature, top_k=20, seed=1)):
        assert len(what) <= 1, f"round {i + 1} read the device {len(what)} times: {what}"


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_one_host_transfer_per_round_gemma4_assistant(reads, temperature):
    target, assistant = tiny_gemma4_pair(32, seed=0, layers=2)
    decoder = SpeculativeDecoder(target, Gemma4AssistantDrafter(assistant), k=3)
    for i, what in enumerate(per_round(decoder, reads, temperature=temperature, seed=1)):
        assert len(what) <= 1, f"round {i + 1} read the device {len(what)} times: {what}"


@pytest.mark.parametrize("policy", [Heuristic(2, 6), CostModel(6, verify_cost={1: 1.1, 4: 1.3}, draft_cost=0.05)])
def test_policies_read_nothing_more(pair, reads, policy):
    decoder = SpeculativeDecoder(pair[0], DraftModelDrafter(pair[1]), k=policy)
    for temperature in (0.0, 1.0):
        for i, what in enumerate(per_round(decoder, reads, temperature=temperature)):
            assert len(what) <= 1, f"round {i + 1} read the device {len(what)} times: {what}"


def test_confidence_stop_reads_once_per_drafted_token(pair, reads):
    """The documented price of stopping on the drafter's confidence (transformers pays it too)."""
    decoder = SpeculativeDecoder(pair[0], DraftModelDrafter(pair[1]), k=ConfidenceStop(0.5, 4))
    seen, drafted = [], []

    def hook(record):
        seen.append(len(reads.what))
        drafted.append(len(record.drafted))
        reads.what.clear()

    decoder.add_hook(hook)
    decoder.generate(PROMPT, max_new_tokens=24)
    assert all(n <= d + 1 for n, d in zip(seen[1:], drafted[1:], strict=True))


def test_ngram_reads_the_host_copy_only():
    """n-gram lookup is host work: it must use the engine's host copy of the ids, never copy them off the device.
    (On CPU its lookup's tensors are host tensors too, so the counter above cannot judge it; meta tensors can't be
    read at all.)"""
    from labkit.drafters.base import DraftContext

    tokens = [7, 1, 2, 3, 4, 9, 1, 2, 3]
    ctx = DraftContext(torch.empty(len(tokens), dtype=torch.long, device="meta"), None, None, None, 0, tokens)
    prop = NGramDrafter(3).propose(ctx, 4, None)
    assert prop.tokens.device.type == "meta" and prop.tokens.shape == (4,)


def test_counter_sees_what_it_should(reads):
    x = torch.tensor([0.2, 0.8])
    int(x.argmax())
    bool(x[0] > 0)
    x.tolist()
    torch.multinomial(x, 1)
    x[x > 0.5]
    assert reads.count == 5, reads.what


@pytest.mark.parametrize("name", ["draft-model", "mtp"])
def test_greedy_drafts_build_no_distributions(pair, name):
    """Greedy verification compares tokens: drafters report q of their tokens only, nothing of size k x V."""
    drafter = drafters(pair)[name]
    seen = []
    propose = drafter.propose
    drafter.propose = lambda ctx, k, sampler: seen.append(propose(ctx, k, sampler)) or seen[-1]
    dec = SpeculativeDecoder(pair[0], drafter, k=4)
    greedy = dec.generate(PROMPT, max_new_tokens=12)
    drafted = [p for p in seen if p.tokens.numel()]  # the last round may draft nothing
    assert drafted and all(p.q is None and p.q_tokens.shape == p.tokens.shape for p in drafted)
    assert all(0 < q <= 1 for r in greedy.rounds for q in r.q)
    seen.clear()
    dec.generate(PROMPT, max_new_tokens=12, temperature=1.0)
    drafted = [p for p in seen if p.tokens.numel()]
    assert drafted and all(p.q.shape == (p.tokens.numel(), 32) for p in drafted)


def test_sampling_draw_matches_multinomial():
    """The sync-free draw is torch.multinomial's own draw: seeded outputs did not change with it."""
    from labkit.core.sampling import sample

    for seed in range(50):
        probs = torch.softmax(torch.randn(40, generator=torch.Generator().manual_seed(seed)) * 3, -1)
        probs[::3] = 0
        a, b = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
        assert torch.equal(torch.multinomial(probs, 1, generator=a), sample(probs, b))
        assert torch.equal(torch.rand(3, generator=a), torch.rand(3, generator=b))  # same stream afterwards


def test_tiny_model_is_cpu():
    assert tiny_model().device.type == "cpu"  # the counts above are what a GPU would wait for, read on CPU
