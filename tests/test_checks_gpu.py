"""The device check (labkit.checks, run by scripts/gpu_check.sh) at tiny size on the CPU: every section runs,
correctness checks can fail, the E2B shapes build (real head sizes: an MTP head for them too), the output is one table
plus gpu_check.json in the folder given."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from labkit.checks.correctness import check_sampling
from labkit.checks.pairs import e2b_like_pair
from labkit.checks.report import Report

# A budget no loaded machine runs out of: this test checks that every section runs, not how fast.
TINY = ["--device", "cpu", "--size", "tiny", "--compile-mode", "eager", "--ks", "0,2", "--max-new-tokens", "16",
        "--repeats", "1", "--chi2-draws", "400", "--budget-s", "100000"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """scripts/gpu_check.sh itself, at tiny size on the CPU."""
    out = tmp_path_factory.mktemp("gpu_check")
    root = Path(__file__).parent.parent
    env = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"}  # no token: the real pair is skipped in one line
    proc = subprocess.run(["bash", str(root / "scripts" / "gpu_check.sh"), str(out), *TINY],
                          capture_output=True, text=True, timeout=3600, cwd=root, env={**env, "PYTHON": sys.executable})
    return proc, out


@pytest.mark.slow  # the whole device script in a subprocess (minutes on a CPU)
def test_tiny_cpu_run_passes_every_section(tiny_run):
    proc, out = tiny_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = proc.stdout
    for section in ("greedy equality", "lossless sampling rule", "lossless sampling at draft position 2",
                    "device copy rate", "bench table", "compile / CUDA-graph", "compiled static-cache drafting"):
        assert f"== {section}" in text
    assert "FAIL" not in text and "done: 0 failed" in text
    assert "SKIP real google/gemma-4-E2B-it + assistant: no HF_TOKEN" in text
    assert "PASS gemma4 tiny, window 8: transformers + assistant == greedy" in text
    for drafter in ("ngram", "draft-model", "early-exit", "synthetic", "mtp (gemma3)", "mtp (gemma4)",
                    "gemma4 assistant"):
        assert f"PASS {drafter} k=3 (static cache, compiled (eager)) == plain" in text, drafter
    assert "PASS mtp head: 3 sampled tokens (k=2) ~ target" in text
    assert "PASS gemma4 assistant: 3 sampled tokens (k=2) ~ target" in text
    assert "roofline: labkit plain decoding" in text and "compiled static (eager)" in text
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["failures"] == [] and report["real"]["skipped"].startswith("no HF_TOKEN")
    assert {r["status"] for r in report["checks"]} == {"PASS", "INFO", "SKIP"}
    assert text.index("status  check / measurement") > text.index("done: 0 failed")  # the table comes last
    methods = {(r["engine"], r["method"], r["k"]) for r in report["bench"]["rows"] if r["category"] == "all"}
    assert {("labkit", "plain", 0), ("labkit", "ngram", 2), ("labkit", "assistant", 2), ("labkit", "mtp", 2),
            ("transformers", "greedy", 0), ("transformers", "assistant", 2)} <= methods
    assert (out / "bench.json").exists()


def test_a_broken_acceptance_rule_fails_the_check(monkeypatch, capsys):
    from labkit.core import acceptance

    monkeypatch.setattr(acceptance, "sampling_verify", acceptance.accept_all_verify)
    rep = Report(budget_s=60)
    check_sampling(rep, torch.device("cpu"), trials=1500)
    assert rep.failures == ["sampling_verify: first token ~ p"]
    assert "FAIL sampling_verify" in capsys.readouterr().out


def test_sections_that_do_not_fit_the_budget_are_skipped(capsys):
    rep = Report(budget_s=0)
    assert rep.section("slow thing", lambda: 1 / 0, need_s=10) is None
    assert rep.failures == [] and "SKIP slow thing" in capsys.readouterr().out


def test_e2b_like_shapes_build_on_the_meta_device():
    from labkit.measure.timing import weight_bytes

    target, assistant = e2b_like_pair(torch.device("meta"), torch.bfloat16)
    cfg = target.config.get_text_config()
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.vocab_size) == (1536, 35, 262144)
    assert cfg.kv_sharing_modes.count("store") == 2  # the last sliding and last full layer feed the assistant
    assert assistant.config.backbone_hidden_size == cfg.hidden_size
    # per-layer embeddings are looked up, not read whole: bytes per token far below the parameter bytes
    assert weight_bytes(target) < 0.25 * sum(p.numel() * 2 for p in target.parameters())
    layer = target.config.get_text_config().per_layer_config
    assert (layer[0].head_dim, layer[4].head_dim) == (256, 512)  # sliding, full: E2B's real head sizes


def test_an_mtp_head_fits_the_e2b_shapes():
    """MTPConfig.for_target used to read the ambiguous global head_dim of a Gemma 4 config and raise."""
    from transformers.integrations.heterogeneity.configuration_utils import AmbiguousGlobalPerLayerAttributeError

    from labkit.drafters.mtp.network import MTPConfig, MTPHead

    target, _ = e2b_like_pair(torch.device("meta"), torch.bfloat16)
    with pytest.raises(AmbiguousGlobalPerLayerAttributeError):
        target.config.get_text_config().head_dim  # noqa: B018  (what the old code read)
    c = MTPConfig.for_target(target, layers=2)
    with torch.device("meta"):
        head = MTPHead(c)
    assert c.layer_types == ["sliding_attention", "full_attention"] and c.head_dims == [256, 512]
    assert [layer.q_proj.out_features for layer in head.layers] == [8 * 256, 8 * 512]


def test_script_refuses_cuda_without_a_gpu():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    from labkit.cli import main

    assert main(["gpu-check", "--device", "cuda"]) == 2
