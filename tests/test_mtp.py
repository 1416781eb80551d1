"""The MTP drafter (Gemma 4 assistant architecture) and its self-distillation: exactness, losslessness, errors."""

import dataclasses
from functools import partial
from pathlib import Path

import pytest
import torch

from labkit import SpeculativeDecoder, tiny_model
from labkit.core.sampling import SamplingConfig
from labkit.drafters import make_drafter
from labkit.drafters.mtp.drafter import MTPDrafter
from labkit.drafters.mtp.weights import MTPWeightsError
from labkit.measure.prompts import prompt_set
from labkit.models.load import Target, as_target
from labkit.training.distill import train
from lossless import DRAWS, draw_tokens, exact_tokens, is_lossless, pvalues
from mtp_tiny import PROMPTS, tiny_cfg, tiny_target

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A head self-distilled from the tiny target in a few seconds: it accepts often, so every path is exercised."""
    out = tmp_path_factory.mktemp("mtp-tiny")
    target = tiny_target()
    summary = train(tiny_cfg(out), target=target, progress=False)
    return target, MTPDrafter.load(out / "mtp.safetensors"), summary


# ------------------------------------------------------------------------------------------- exactness (greedy)


@pytest.mark.parametrize("k", [1, 2, 3, 5, 8])
def test_greedy_equals_plain_trained(trained, k):
    target, drafter, _ = trained
    accepted = 0
    for prompt in PROMPTS:
        plain = SpeculativeDecoder(target, None).generate(prompt, max_new_tokens=40)
        out = SpeculativeDecoder(target, drafter, k=k).generate(prompt, max_new_tokens=40)
        assert out.token_ids == plain.token_ids
        accepted += out.stats.counts.accepted
    assert accepted > 0  # otherwise only the rejection path was compared


@pytest.mark.parametrize("k", [1, 2, 3, 5, 8])
def test_greedy_equals_plain_random_init(k):
    """An untrained head with a reduced vocabulary on a 3-layer target (window 8 < prompt + output)."""
    target = as_target(tiny_model(vocab_size=8, layers=3, hidden=48, seed=3), None)
    drafter = MTPDrafter.random_init(target, layers=2, seed=k, vocab_ids=torch.tensor([0, 2, 3, 5, 6]))
    prompt = [1, 3, 4, 5, 3, 4]
    plain = SpeculativeDecoder(target, None).generate(prompt, max_new_tokens=30)
    out = SpeculativeDecoder(target, drafter, k=k).generate(prompt, max_new_tokens=30)
    assert out.token_ids == plain.token_ids
    assert out.stats.counts.draft_tokens > 0


@pytest.mark.parametrize("k", [1, 3])
def test_gemma4_target_with_a_wider_full_attention_head(k, tmp_path):
    """Real Gemma 4: head_dim 256 on sliding layers, 512 on full ones; each head layer takes the size it reads."""
    from labkit.models.tiny import tiny_gemma4_pair

    target = as_target(tiny_gemma4_pair(32, seed=0, global_head_dim=32)[0], None)
    drafter = MTPDrafter.random_init(target, layers=2, seed=k)
    assert drafter.head.config.head_dims == [16, 32]
    assert [layer.q_norm.weight.numel() for layer in drafter.head.layers] == [16, 32]
    plain = SpeculativeDecoder(target, None).generate(PROMPTS[0], max_new_tokens=20)
    out = SpeculativeDecoder(target, drafter, k=k).generate(PROMPTS[0], max_new_tokens=20)
    assert out.token_ids == plain.token_ids and out.stats.counts.draft_tokens > 0
    drafter.save(tmp_path / "h.safetensors")
    assert MTPDrafter.load(tmp_path / "h.safetensors").head.config == drafter.head.config


def test_one_layer_head(trained):
    target = trained[0]
    drafter = MTPDrafter.random_init(target, layers=1)
    assert drafter.head.config.layer_types == ["full_attention"]
    plain = SpeculativeDecoder(target, None).generate(PROMPTS[0], max_new_tokens=20)
    assert SpeculativeDecoder(target, drafter, k=3).generate(PROMPTS[0], max_new_tokens=20).token_ids == plain.token_ids


def test_kv_invariant_and_reuse(trained):
    target, drafter, _ = trained
    out = SpeculativeDecoder(target, drafter, k=4).generate(PROMPTS[2], max_new_tokens=40)
    for r in out.rounds:
        assert r.target_kv.after_rollback == r.context_len + len(r.emitted) - 1
        assert r.drafter_kv is None  # no cache of its own: nothing to prefill, nothing to roll back
        if r.drafted:
            assert r.reused_target_state == r.context_len - 1  # the full layer reads every cached position


def test_one_token_prompt_drafts_from_the_second_round(trained):
    target, drafter, _ = trained
    out = SpeculativeDecoder(target, drafter, k=3).generate([1], max_new_tokens=10)
    assert out.rounds[0].drafted == []  # no hidden state yet
    assert out.rounds[1].drafted
    assert out.token_ids == SpeculativeDecoder(target, None).generate([1], max_new_tokens=10).token_ids


@pytest.mark.parametrize("context_tokens", [False, True])
def test_drafts_come_from_the_candidates_only(context_tokens):
    """Candidates: the reduced vocabulary, plus (context_tokens) every token committed before the round."""
    target = as_target(tiny_model(vocab_size=32, layers=2, hidden=32, seed=0), None)
    subset = torch.tensor([0, 2, 3, 5, 6, 8, 13, 21])
    drafter = MTPDrafter.random_init(target, vocab_ids=subset, context_tokens=context_tokens)
    prompt = [1, 30, 29, 28, 27]
    out = SpeculativeDecoder(target, drafter, k=3).generate(prompt, max_new_tokens=24, temperature=1.0, seed=1)
    committed = list(prompt)
    used_context = False
    for r in out.rounds:
        allowed = set(subset.tolist()) | (set(committed) if context_tokens else set())
        assert set(r.drafted) <= allowed
        used_context |= bool(set(r.drafted) - set(subset.tolist()))
        assert all(q > 0 for q in r.q)  # q is the distribution each draft was drawn from
        committed += r.emitted
    assert used_context == context_tokens


# ------------------------------------------------------------------------------------------- training


def test_training_learns(trained):
    """Held-out greedy acceptance after 150 steps is far above an untrained head's."""
    _, _, summary = trained
    ev = summary["heldout"]
    assert ev["acceptance_by_position"][0] > 0.4  # untrained: ~0.05
    assert ev["mean_acceptance_length"]["4"] > 1.8


def test_init_from_starts_at_the_given_head(tmp_path, trained):
    """--init-from: step 0 of the new run is the given head (its held-out acceptance, not a random head's)."""
    target, _, summary = trained
    src = tmp_path / "src.safetensors"
    trained[1].save(src)
    cont = train(tiny_cfg(tmp_path / "b", steps=1, lr=1e-9, warmup=1, init_from=str(src)), target=target,
                 progress=False)
    a = cont["heldout"]["acceptance_by_position"][0]
    assert abs(a - summary["heldout"]["acceptance_by_position"][0]) < 0.1 and a > 0.4


def test_a_fused_head_with_the_last_state_starts_as_the_unfused_head(tmp_path, trained):
    """--fuse --fuse-last --init-from: fc passes the last hidden state through, so at step 0 the fused head drafts
    what the given head drafts; a fused head that lacks the last state cannot start from it (one clear line)."""
    target, _, summary = trained
    src = tmp_path / "src.safetensors"
    trained[1].save(src)
    last = target.model.config.num_hidden_layers
    cfg = tiny_cfg(tmp_path / "f", steps=1, lr=1e-9, warmup=1, init_from=str(src), fuse=True, fuse_last=True,
                   aux_layers=(0,))
    cont = train(cfg, target=target, progress=False)
    fused = MTPDrafter.load(tmp_path / "f" / "mtp.safetensors")
    assert fused.hidden_layers == (0, last) and fused.head.fuse.weight.shape == (32, 64)
    a = cont["heldout"]["acceptance_by_position"][0]
    assert abs(a - summary["heldout"]["acceptance_by_position"][0]) < 0.02
    for prompt in PROMPTS[:2]:  # the engine hands it hidden_states[0] and [L]: its drafts are the source head's
        one = SpeculativeDecoder(target, trained[1], k=3).generate(prompt, max_new_tokens=20)
        two = SpeculativeDecoder(target, fused, k=3).generate(prompt, max_new_tokens=20)
        assert two.stats.counts.accepted == one.stats.counts.accepted
    with pytest.raises(ValueError, match="pass --fuse-last"):
        train(dataclasses.replace(cfg, out=str(tmp_path / "g"), fuse_last=False), target=target, progress=False)
    with pytest.raises(ValueError, match="pass --fuse too"):
        train(dataclasses.replace(cfg, out=str(tmp_path / "h"), fuse=False), target=target, progress=False)


# ------------------------------------------------------------------------------------------- lossless sampling

V = 8
CHI_PROMPT = [1, 3, 4, 5, 3, 4]
SETTINGS = {"T=1.0": SamplingConfig(1.0), "T=0.7,top_k=5,top_p=0.9": SamplingConfig(0.7, 5, 0.9)}


def chi_target():
    """Sliding + full layer; two layers keep each of the 20,000 generations cheap (~10 ms on an idle core)."""
    return tiny_model(V, layers=2, hidden=32, seed=0)


def build_mtp(subset: bool) -> SpeculativeDecoder:
    """Random-init head; with ``subset`` it scores 5 of the 8 tokens, so q is zero on the others."""
    target = chi_target()
    ids = torch.tensor([0, 2, 3, 5, 6]) if subset else None
    return SpeculativeDecoder(target, MTPDrafter.random_init(target, seed=1, vocab_ids=ids), k=2)


@pytest.fixture(scope="module")
def exact():
    return {name: exact_tokens(chi_target(), CHI_PROMPT, cfg) for name, cfg in SETTINGS.items()}


@pytest.mark.slow
@pytest.mark.parametrize("setting", list(SETTINGS))
def test_sampling_is_lossless(setting, exact):
    """Three tokens with k = 2: the second draft comes from the chained hidden state g (lossless.py)."""
    counts = draw_tokens(partial(build_mtp, True), CHI_PROMPT, SETTINGS[setting])
    assert counts.sum() == DRAWS
    assert is_lossless(counts, exact[setting]), pvalues(counts, exact[setting])


def test_chi2_target_is_interesting(exact):
    """The χ² test would be weak on a near-uniform or near-deterministic target."""
    p = exact["T=1.0"]
    assert abs(p.sum() - 1) < 1e-5 and 0.05 < p.sum(2).max() < 0.8


def test_drafts_are_sampled_not_argmax():
    """Across seeds the drafted token varies at a fixed state: drafts are draws from q, not its argmax."""
    dec = build_mtp(False)
    first = {dec.generate(CHI_PROMPT, max_new_tokens=3, temperature=1.0, seed=s).rounds[0].drafted[0]
             for s in range(40)}
    assert len(first) > 2


# ------------------------------------------------------------------------------------------- errors (one line each)


def one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg
    return msg


def test_missing_weight_file(tmp_path):
    with pytest.raises(MTPWeightsError) as e:
        MTPDrafter.load(tmp_path / "nope.safetensors")
    assert "not found" in one_line(e) and "train-mtp" in one_line(e)


@pytest.mark.parametrize("content", [b"", b"garbage" * 10, b"\x80\x04\x95pickle"])
def test_corrupt_weight_file(tmp_path, content):
    path = tmp_path / "mtp.safetensors"
    path.write_bytes(content)
    with pytest.raises(MTPWeightsError) as e:
        MTPDrafter.load(path)
    assert "corrupt" in one_line(e)


def test_not_a_labkit_file(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "x.safetensors"))
    with pytest.raises(MTPWeightsError) as e:
        MTPDrafter.load(tmp_path / "x.safetensors")
    assert "not a labkit MTP weight file" in one_line(e)


def test_missing_tensors(tmp_path, trained):
    from safetensors import safe_open
    from safetensors.torch import save_file

    _, drafter, _ = trained
    drafter.save(tmp_path / "ok.safetensors")
    with safe_open(str(tmp_path / "ok.safetensors"), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys() if "q_proj" not in k}
    save_file(tensors, str(tmp_path / "cut.safetensors"), metadata=meta)
    with pytest.raises(MTPWeightsError) as e:
        MTPDrafter.load(tmp_path / "cut.safetensors")
    assert "missing or mismatched" in one_line(e)


def test_duplicate_vocab_ids(tmp_path, trained):
    """A token listed twice in vocab_ids would be scored twice: q would count it double."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    target, drafter, _ = trained
    drafter.save(tmp_path / "ok.safetensors")
    with safe_open(str(tmp_path / "ok.safetensors"), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    ids = tensors["vocab_ids"]
    tensors["vocab_ids"] = torch.cat([ids[:-1], ids[:1]])  # same length, first id twice
    save_file(tensors, str(tmp_path / "dup.safetensors"), metadata=meta)
    with pytest.raises(MTPWeightsError) as e:
        MTPDrafter.load(tmp_path / "dup.safetensors")
    assert "more than once" in one_line(e)
    with pytest.raises(ValueError, match="more than once"):
        MTPDrafter.random_init(target, vocab_ids=torch.tensor([0, 2, 2, 5]))


def test_weights_for_another_hidden_size(trained):
    _, drafter, _ = trained
    other = as_target(tiny_model(vocab_size=32, layers=2, hidden=48, seed=0), None)
    with pytest.raises(MTPWeightsError) as e:
        SpeculativeDecoder(other, drafter, k=2).generate([1, 2, 3], max_new_tokens=3)
    assert "hidden size 32" in one_line(e) and "train-mtp" in one_line(e)


def test_vocabulary_mismatch(trained):
    _, drafter, _ = trained
    other = as_target(tiny_model(vocab_size=64, layers=2, hidden=32, seed=0), None)
    with pytest.raises(ValueError, match="vocabulary size 32 differs"):
        SpeculativeDecoder(other, drafter, k=2)
    with pytest.raises(MTPWeightsError) as e:
        drafter.check(other)
    assert "vocabulary 32" in one_line(e)


def test_weights_for_another_model_of_the_same_shape(trained):
    _, drafter, _ = trained
    other = as_target(tiny_model(vocab_size=32, layers=2, hidden=32, seed=5), None)
    with pytest.raises(MTPWeightsError) as e:
        SpeculativeDecoder(other, drafter, k=2).generate([1, 2, 3], max_new_tokens=3)
    assert "other embedding weights" in one_line(e)


class FakeTokenizer:
    def __init__(self, prefix: str):
        self.prefix = prefix

    def __len__(self):
        return 32

    def convert_ids_to_tokens(self, ids):
        return [f"{self.prefix}{i}" for i in ids]


def test_weights_for_another_tokenizer(trained, tmp_path):
    target = trained[0]
    with_tok = Target(target.model, FakeTokenizer("a"), "tok-a")
    drafter = MTPDrafter.random_init(with_tok)
    drafter.check(with_tok)
    with pytest.raises(MTPWeightsError) as e:
        drafter.check(Target(target.model, FakeTokenizer("b"), "tok-b"))
    assert "tokenizer differs" in one_line(e)


def test_unknown_pretrained_name():
    with pytest.raises(MTPWeightsError) as e:
        MTPDrafter.pretrained("llama-7b")
    assert "gemma3-270m" in one_line(e)


# ------------------------------------------------------------------------------------------- the shipped weights


SHIPPED = Path(__file__).resolve().parents[1] / "labkit" / "data" / "mtp-gemma3-270m.safetensors"


def test_shipped_weights_are_safetensors_with_target_metadata():
    from safetensors import safe_open

    assert SHIPPED.stat().st_size < 25e6
    with safe_open(str(SHIPPED), framework="pt") as f:
        meta = f.metadata()
    assert meta["format"] == "labkit-mtp" and meta["target"] == "gemma3-270m"
    assert meta["target_hidden_size"] == "640" and meta["target_vocab_size"] == "262144"
    assert meta["vocab_fingerprint"] != "none"


@pytest.mark.slow
def test_shipped_weights_on_the_embedded_model(embedded_fp32):
    """fp32: identical to plain greedy; and the drafts are accepted well above a measured floor."""
    drafter = make_drafter("mtp", embedded_fp32)
    prompt = prompt_set()["qa"][0]
    plain = SpeculativeDecoder(embedded_fp32, None).generate(prompt, max_new_tokens=32)
    out = SpeculativeDecoder(embedded_fp32, drafter, k=3).generate(prompt, max_new_tokens=32)
    assert out.token_ids == plain.token_ids
    # measured 1.78 tokens/verify here (an untrained head: ~1.0); the floor leaves room for other CPUs' fp32 rounding
    assert out.stats.mean_acceptance_length > 1.5
    assert out.rounds[-1].reused_target_state == out.rounds[-1].context_len - 1


def test_make_drafter_mtp_spec_names_the_weights():
    d = make_drafter("mtp")
    assert isinstance(d, MTPDrafter) and d.name == "mtp(gemma3-270m)" and d.needs_hidden


