"""Argument checks for the `labkit` command: every argument is checked before any model loads, and a bad one
answers in one line naming the fix.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import warnings
from pathlib import Path

from labkit.core.drafter_spec import parse
from labkit.measure.prompts import FORMATS, MAX_PROMPTS, load_prompts

MAX_K = 32  # labkit.core.sampling.MAX_K (not imported: it would pull in torch before argument checks)
HUB_TIMEOUT_S = 2.5  # the whole answer to a bad input must come within 5 s


class UsageError(ValueError):
    """A bad argument: one line naming the fix, before any model loads."""



def positive_int(text: str) -> int:
    if not text.lstrip("-").isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return int(text)


def draft_length(text: str) -> int | str:
    """--k: a whole number >= 0, or "auto" where the engine has a draft-length policy."""
    if text == "auto":
        return text
    if not text.isdigit() or int(text) > MAX_K:
        raise argparse.ArgumentTypeError(f"expected a whole number in 0..{MAX_K} (or auto), got {text!r}")
    return int(text)


def k_list(text: str) -> list[int]:
    """--ks: comma-separated draft lengths >= 1."""
    try:
        ks = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        ks = []
    if not ks or min(ks) < 1:
        raise argparse.ArgumentTypeError(f"expected draft lengths >= 1 separated by commas, e.g. 2,4,8; got {text!r}")
    return ks


def shipped_mtp_heads() -> list[str]:
    """Names of the MTP heads shipped in labkit/data/mtp-<name>.safetensors (what mtp.weights.SHIPPED lists; not
    imported from there because that pulls in torch before the arguments are checked)."""
    from importlib import resources

    return sorted(f.name[4:-12] for f in resources.files("labkit").joinpath("data").iterdir()
                  if f.name.startswith("mtp-") and f.name.endswith(".safetensors"))


def check_drafter(spec: str) -> None:
    """The spec's form (labkit.core.drafter_spec, the one grammar) and what the text alone cannot say: that a draft
    model is reachable, that a shipped head or a head file exists. Builds nothing."""
    try:
        d = parse(spec)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if d.kind == "draft-model":
        if d.model is None:  # the bench's bare form names a model it holds; here there is none
            raise UsageError("drafter: 'draft-model' needs a model: draft-model:<hub id or local folder>")
        check_model(d.model, what="draft model")
    elif d.kind in ("mtp", "hybrid") and d.head:
        _check_head(spec, d.head)


def _check_head(spec: str, head: str) -> None:
    if head.endswith(".safetensors"):  # a head written by `labkit train-mtp`
        if not Path(head).is_file():
            raise UsageError(f"drafter: {spec!r}: no such file {head!r}")
        return
    shipped = shipped_mtp_heads()
    if head not in shipped:
        raise UsageError(f"drafter: no shipped MTP head for {head!r}; available: mtp:{', mtp:'.join(shipped)}; "
                         "train one with `labkit train-mtp`")


def torch_build_cuda() -> str | None:
    """The CUDA version torch was built with (None: a CPU-only build), read from torch/version.py without importing
    torch (seconds on a busy machine)."""
    spec = importlib.util.find_spec("torch")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        with contextlib.suppress(OSError):
            for line in open(os.path.join(folder, "version.py"), encoding="utf-8"):
                if line.startswith("cuda"):
                    value = line.split("=", 1)[1].strip().strip("'\"")
                    return None if value == "None" else value
    import torch

    return torch.version.cuda


def check_device(device: str | None) -> None:
    if device is None or device == "cpu":
        return
    if not (device == "cuda" or device.startswith("cuda:") and device[5:].isdigit()):
        raise UsageError(f"device: expected cpu or cuda[:N], got {device!r}")
    if torch_build_cuda() is None:
        raise UsageError("device: this torch is a CPU-only build: drop --device cuda, or install a CUDA build of "
                         "torch (https://pytorch.org/get-started/locally/)")
    import torch

    if not torch.cuda.is_available():
        raise UsageError("device: no CUDA GPU is visible (torch.cuda.is_available() is False): drop --device cuda")


def go_offline() -> None:
    """Use only the local cache from now on: no hub retries while loading (the hub is unreachable)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    with contextlib.suppress(ImportError, AttributeError):
        import huggingface_hub.constants

        huggingface_hub.constants.HF_HUB_OFFLINE = True


def check_model(name: str, what: str = "model") -> None:
    """An embedded name, a local folder, or a hub id that is cached or downloadable now (asked in ~2 s)."""
    if os.path.isdir(name):
        return
    if name.startswith((".", "/", "~")) or name.count("/") != 1:
        from labkit.models.embedded import EMBEDDED

        if name in EMBEDDED:
            return
        raise UsageError(f"{what}: {name!r} is neither an embedded name ({', '.join(EMBEDDED)}), a local folder, "
                         "nor a Hugging Face id like google/gemma-3-270m")
    import huggingface_hub as hub
    from huggingface_hub.errors import GatedRepoError, HFValidationError, RepositoryNotFoundError
    from huggingface_hub.utils import validate_repo_id

    offline_hint = "; offline, use the embedded 'gemma3-270m'" if what == "model" else ""
    try:
        validate_repo_id(name)
    except HFValidationError:
        raise UsageError(f"{what}: {name!r} is not a valid Hugging Face id (owner/name)") from None
    cached = isinstance(hub.try_to_load_from_cache(name, "config.json"), str)  # a path when cached
    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        if not cached:
            raise UsageError(f"{what}: {name!r} is not in the local cache and HF_HUB_OFFLINE is set: download it "
                             f"with internet (hf download {name}) or pass a local folder{offline_hint}")
        return
    try:
        info = hub.model_info(name, timeout=HUB_TIMEOUT_S, files_metadata=False)
        if info.gated:
            hub.auth_check(name)  # raises GatedRepoError unless this token was granted access
    except GatedRepoError:
        raise UsageError(f"{what}: {name!r} is gated: accept its terms at https://huggingface.co/{name} while signed "
                         "in, then run `hf auth login` (or set HF_TOKEN)") from None
    except RepositoryNotFoundError:
        raise UsageError(f"{what}: {name!r} is not on the Hugging Face hub (or is private: `hf auth login`)") from None
    except Exception:  # no network, DNS, timeout, proxy: all mean "unreachable now"
        if cached:
            go_offline()
            return
        raise UsageError(f"{what}: {name!r} is not in the local cache and the Hugging Face hub is unreachable: "
                         f"download it once with internet (hf download {name}) or pass a local folder"
                         f"{offline_hint}") from None
    files = [s.rfilename for s in info.siblings or []]
    if files and not any(f.endswith(".safetensors") for f in files):
        raise UsageError(f"{what}: {name!r} has no safetensors weights (labkit never loads pickle files)")


def check_args(args: argparse.Namespace) -> None:
    """Everything that can be checked before a model loads."""
    if getattr(args, "temperature", 0) < 0:
        raise UsageError(f"--temperature: must be >= 0 (0 = greedy), got {args.temperature}")
    threads = str(getattr(args, "threads", "auto"))
    if threads != "auto" and not (threads.isdigit() and int(threads) > 0):
        raise UsageError(f"--threads: expected a number >= 1 or auto, got {threads!r}")
    top_p = getattr(args, "top_p", None)
    if top_p is not None and not 0 < top_p <= 1:
        raise UsageError(f"--top-p: must be in (0, 1], got {top_p}")
    drafter = getattr(args, "drafter", None)
    if drafter is not None:
        check_drafter(drafter)
        plain = drafter.partition(":")[0] in ("", "none", "plain")
        if getattr(args, "k", None) == 0 and not plain:
            raise UsageError(f"--k 0 means plain decoding and would ignore --drafter {drafter}: pass --k 1 or more, "
                             "or --drafter none")
    html = getattr(args, "html", None)
    if html and not os.path.isdir(os.path.dirname(os.path.abspath(html))):
        raise UsageError(f"--html: folder {os.path.dirname(html)!r} does not exist")
    if getattr(args, "prompts_file", None) is not None:
        load_prompts(args.prompts_file)  # a bad file: one line naming the line and the fix
    check_device(getattr(args, "device", None))
    if hasattr(args, "model"):
        check_model(args.model)


def quiet_for_json() -> None:
    """--json: stdout carries only JSON, stderr stays empty (no progress bars, no library warnings)."""
    os.environ["TRANSFORMERS_VERBOSITY"] = "error"
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    warnings.filterwarnings("ignore")
    with contextlib.suppress(Exception):
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()


def add_sampling(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="gemma3-270m", help="embedded name, Hugging Face id or local folder")
    p.add_argument("--dtype", default=None,
                   choices=["bf16", "bfloat16", "fp32", "float32", "fp16", "float16", "int8"],
                   help="bf16 (default), fp32, or int8 (int8 weight-only linears and LM head, bf16 activations)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    p.add_argument("--max-new-tokens", type=positive_int, default=64)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--top-k", type=positive_int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", default="auto", help="torch threads: a number, or auto (the cores other work "
                   "leaves free; $LABKIT_THREADS overrides)")
    p.add_argument("--json", action="store_true", help="print only JSON (no progress bars)")


def add_prompts(p: argparse.ArgumentParser, instead: str) -> None:
    """--prompts FILE, the same for every command that measures prompts (bench, demo, tune)."""
    p.add_argument("--prompts", dest="prompts_file", default=None, metavar="FILE",
                   help=f"your own prompts instead of {instead}: {FORMATS}; at most {MAX_PROMPTS}")


def apply_threads(args: argparse.Namespace) -> int:
    from labkit.threads import set_threads

    return set_threads(args.threads)
