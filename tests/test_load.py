"""The GPU / Colab path without a GPU or the hub: notebook 04's GPU cell on tiny Gemma 4 pairs saved in a temporary
folder, and each finding of issue 9 that reading the code found (offline switch, head dims, dtype, gated weights,
cache keyword, torch bound, compiled static-cache drafting)."""

import ast
import os
import re
from pathlib import Path

import pytest
import tomllib
import torch

from labkit import SpeculativeDecoder
from labkit.models import load
from labkit.models.tiny import tiny_gemma4_pair, tiny_model

ROOT = Path(__file__).resolve().parents[1]
NB04 = ROOT / "notebooks" / "src" / "04_mtp_drafters.py"


pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------------------- the Colab dry run


def byte_tokenizer():
    """A byte-level tokenizer with 260 ids (4 specials + 256 bytes): any prompt text, saved and loaded in seconds."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<bos>", "<eos>", "<unk>"]  # ids 0, 1, 2 as in tiny_gemma4_pair's config
    vocab = {t: i for i, t in enumerate(specials + sorted(pre_tokenizers.ByteLevel.alphabet()))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer, tok.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>",
                                   unk_token="<unk>")


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """{hub id: local folder}: a tiny Gemma 4 target with a tokenizer, and its centroid-head assistant, written with
    save_pretrained as the hub holds them (Gemma's 262k vocabulary would cost a minute here: 260 ids instead)."""
    root = tmp_path_factory.mktemp("hub")
    tok = byte_tokenizer()
    target, assistant = tiny_gemma4_pair(vocab_size=len(tok), seed=0, centroids=4, global_head_dim=32)
    target.save_pretrained(root / "target")
    tok.save_pretrained(root / "target")
    assistant.save_pretrained(root / "assistant")
    return {"google/gemma-4-E2B-it": str(root / "target"), "google/gemma-4-E2B-it-assistant": str(root / "assistant")}


def gpu_cell() -> str:
    """The source of notebook 04's GPU cell (the one that loads google/gemma-4-E2B-it)."""
    cells = NB04.read_text().split("\n# %%")
    cell = next(c for c in cells if "real_pair_comparison" in c and not c.startswith(" [markdown]"))
    return cell.split("\n", 1)[1]


def run_cell(monkeypatch, capsys, prompts: list[str]) -> tuple[dict, str]:
    """Run the GPU cell as on a Colab GPU (DEVICE == "cuda") with the device swapped for the CPU."""
    from labkit.lab import real_pair

    real = real_pair.real_pair_comparison
    monkeypatch.setattr(real_pair, "real_pair_comparison",
                        lambda *a, **kw: real(*a, **{**kw, "device": "cpu", "max_new_tokens": 12}))
    import pandas as pd

    shown = []
    ns = {"DEVICE": "cuda", "prompts": prompts, "display": shown.append, "pd": pd}
    exec(compile(gpu_cell(), str(NB04), "exec"), ns)
    return {"shown": shown, **ns}, capsys.readouterr().out


def test_notebook_04_gpu_cell_runs_on_tiny_pairs(hub, monkeypatch, capsys):
    monkeypatch.setattr(load, "resolve", lambda name: hub.get(name, name))
    ns, out = run_cell(monkeypatch, capsys, ["The capital of France is", "def add(a, b):"])
    g4 = ns["g4"]
    assert [r["drafter"] for r in g4["rows"]] == ["plain", "Gemma 4 assistant"]
    assert g4["same_tokens"], "greedy: the assistant must not change the output"
    assert len(g4["acceptance_by_position"]) == 4 and all(0 <= a <= 1 for a in g4["acceptance_by_position"])
    assert ns["shown"] and "In this run the assistant" in out


def test_gated_weights_are_one_line_saying_what_to_do(hub, monkeypatch, capsys):
    import httpx
    from huggingface_hub.errors import GatedRepoError
    from transformers import AutoTokenizer

    url = "https://huggingface.co/google/gemma-4-E2B-it/resolve/main/config.json"
    response = httpx.Response(401, request=httpx.Request("GET", url))

    def gated(*a, **kw):
        try:
            raise GatedRepoError("401 Client Error. Cannot access gated repo", response=response)
        except GatedRepoError as e:  # transformers wraps the hub's error in an OSError
            raise OSError("You are trying to access a gated repo.\nMake sure to have access to it") from e

    monkeypatch.setattr(AutoTokenizer, "from_pretrained", gated)
    with pytest.raises(load.ModelNotAvailableError) as e:
        load.load_target("google/gemma-4-E2B-it", device="cpu")
    msg = str(e.value)
    assert "\n" not in msg and "https://huggingface.co/google/gemma-4-E2B-it" in msg
    assert "huggingface_hub.login()" in msg and "HF_TOKEN" in msg
    _, out = run_cell(monkeypatch, capsys, ["Hello"])
    assert "accept its terms" in out and "Traceback" not in out and out.count("\n") <= 2


# ------------------------------------------------------------------------------------------- findings by reading


def test_preparing_the_embedded_model_leaves_the_process_online(tmp_path, monkeypatch):
    """prepare_embedded used to set HF_HUB_OFFLINE=1 for the rest of the process (notebook 04 then downloads)."""
    import importlib

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from labkit.models import embedded

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("LABKIT_CACHE_DIR", str(tmp_path))
    pkg = importlib.import_module(embedded.EMBEDDED["gemma3-270m"]["package"])
    monkeypatch.setattr(pkg, "assemble", lambda: tmp_path / "model.gguf")
    calls, tok = [], byte_tokenizer()

    def fake_tok(*a, **kw):
        calls.append(kw)
        return tok

    def fake_model(*a, **kw):
        calls.append(kw)
        return tiny_model(vocab_size=32)

    monkeypatch.setattr(AutoTokenizer, "from_pretrained", fake_tok)
    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", fake_model)
    out = embedded.prepare_embedded(progress=False)
    assert (out / "model.safetensors").exists()
    assert "HF_HUB_OFFLINE" not in os.environ
    assert calls and all(kw.get("local_files_only") for kw in calls)


def test_default_dtype_by_device(monkeypatch):
    assert load.default_dtype("cpu") == torch.bfloat16
    for capability, want in [((7, 5), torch.float16), ((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16)]:
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None, c=capability: c)
        assert load.default_dtype("cuda") == want, capability


def test_labkit_passes_cache_not_past_key_values():
    """transformers 5.24 deprecates ``past_key_values=`` (FutureWarning, removed in 5.40) for ``cache=``."""
    offenders = []
    for path in (ROOT / "labkit").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.keyword) and node.arg == "past_key_values":
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, offenders


def test_torch_lower_bound_has_enable_gqa():
    """The MTP head calls scaled_dot_product_attention(enable_gqa=True): new in torch 2.5."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    bound = next(re.match(r"torch>=(\d+)\.(\d+)", d) for d in deps if d.startswith("torch"))
    assert bound and (int(bound[1]), int(bound[2])) >= (2, 5), deps


# ------------------------------------------------------------------------------------------- compiled drafting


@pytest.fixture(scope="module")
def cases():
    """Every drafter on tiny fp32 models whose window (64) fits a static cache; unequal Gemma 4 head sizes."""
    from labkit.checks.pairs import tiny_drafters

    return tiny_drafters(torch.device("cpu"))


PROMPT = [5, 6, 7, 8, 5, 6, 7, 8, 9, 10, 11]


def test_compiled_static_cache_drafting_equals_plain(cases):
    """cache="static" + compile_mode (backend "eager" here: dynamo traces the forward as on a GPU, no codegen) with
    the drafters that read the target's cache, on Gemma 4 (unequal head sizes): the same tokens as plain decoding
    and the same drafts as with the dynamic cache, round by round (they read the same K/V). Every other drafter's
    compiled run is checked by the gpu_check run (tests/test_checks_gpu.py), which compiles both tiny targets."""
    for name in ("mtp (gemma4)", "gemma4 assistant"):
        target, drafter, k = cases[name]
        plain = SpeculativeDecoder(target, None).generate(PROMPT, max_new_tokens=20).token_ids
        dynamic = SpeculativeDecoder(target, drafter, k=k).generate(PROMPT, max_new_tokens=20)
        compiled = SpeculativeDecoder(target, drafter, k=k, cache="static", compile_mode="eager").generate(
            PROMPT, max_new_tokens=20)
        assert compiled.token_ids == plain, name
        assert [r.drafted for r in compiled.rounds] == [r.drafted for r in dynamic.rounds], name
