"""The one drafter-spec parser (labkit.core.drafter_spec): every form parses, every malformed spec is one line, and
importing it pulls in no torch (the CLI checks specs before any model loads)."""

import subprocess
import sys

import pytest

from labkit.core.drafter_spec import FORMS, KINDS, DrafterSpec, parse

GOOD = {
    None: DrafterSpec("none", ""),
    "": DrafterSpec("none", ""),
    "none": DrafterSpec("none", "none"),
    "plain": DrafterSpec("none", "plain"),
    "ngram": DrafterSpec("ngram", "ngram"),
    "ngram:2": DrafterSpec("ngram", "ngram:2", n=2),
    "early-exit": DrafterSpec("early-exit", "early-exit"),
    "early-exit:4": DrafterSpec("early-exit", "early-exit:4", layers=4),
    "early_exit:1": DrafterSpec("early-exit", "early_exit:1", layers=1),
    "synthetic": DrafterSpec("synthetic", "synthetic"),
    "synthetic:0.5": DrafterSpec("synthetic", "synthetic:0.5", alpha=0.5),
    "synthetic:1": DrafterSpec("synthetic", "synthetic:1", alpha=1.0),
    "draft-model": DrafterSpec("draft-model", "draft-model"),
    "assistant": DrafterSpec("draft-model", "assistant"),
    "draft-model:google/gemma-3-270m": DrafterSpec("draft-model", "draft-model:google/gemma-3-270m",
                                                   model="google/gemma-3-270m"),
    "draft_model:./folder": DrafterSpec("draft-model", "draft_model:./folder", model="./folder"),
    "mtp": DrafterSpec("mtp", "mtp"),
    "mtp:gemma3-270m": DrafterSpec("mtp", "mtp:gemma3-270m", head="gemma3-270m"),
    "mtp:runs/head.safetensors": DrafterSpec("mtp", "mtp:runs/head.safetensors", head="runs/head.safetensors"),
    "hybrid": DrafterSpec("hybrid", "hybrid"),
    "hybrid:4": DrafterSpec("hybrid", "hybrid:4", min_match=4),
    "hybrid:3:auto:2": DrafterSpec("hybrid", "hybrid:3:auto:2", min_match=3, lookup_k="auto", model_k=2),
    "hybrid::auto:auto": DrafterSpec("hybrid", "hybrid::auto:auto", lookup_k="auto", model_k="auto"),
    "hybrid:3:8:2:h.safetensors": DrafterSpec("hybrid", "hybrid:3:8:2:h.safetensors", min_match=3, lookup_k=8,
                                              model_k=2, head="h.safetensors"),
}

BAD = {
    "bogus": "ngram[:n]",
    "none:x": "unknown spec",
    "ngram:x": "ngram:<n>",
    "ngram:0": "ngram:<n>",
    "ngram:": "ngram:<n>",
    "early-exit:-1": "early-exit:<layers>",
    "synthetic:2": "[0, 1]",
    "synthetic:x": "[0, 1]",
    "draft-model:": "needs a model",
    "hybrid:x": "hybrid:<min_match>",
    "hybrid:x:auto:auto": "hybrid:<min_match>",
    "hybrid:3:auto": "lookup_k:model_k",
    "hybrid:3:auto:2:h:extra": "lookup_k:model_k",
    "hybrid:3:auto:many": "model_k must be 'auto'",
    "hybrid:3:0:2": "lookup_k must be 'auto'",
}


@pytest.mark.parametrize("spec", list(GOOD), ids=[repr(s) for s in GOOD])
def test_every_form_parses(spec):
    assert parse(spec) == GOOD[spec]
    assert parse(spec).kind in KINDS


@pytest.mark.parametrize("spec", list(BAD))
def test_every_malformed_spec_raises_one_line(spec):
    with pytest.raises(ValueError) as e:
        parse(spec)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("drafter: ") and BAD[spec] in msg, msg


def test_forms_name_every_kind():
    for kind in KINDS:
        assert kind in FORMS


def test_head_file():
    assert parse("mtp:a.safetensors").head_file and not parse("mtp").head_file
    assert parse("hybrid:3:auto:auto:a.safetensors").head_file


def test_parser_imports_no_torch():
    code = ("import sys; import labkit.core.drafter_spec as d; d.parse('hybrid:3:auto:auto'); "
            "print('torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"
