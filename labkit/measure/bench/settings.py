"""The bench's settings and plan: what runs (engines x methods x k x decoding), on which prompts, checked before
anything loads."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from labkit.core.verify_cost import VerifyCost
from labkit.measure.prompts import CATEGORIES, load_prompts, prompt_set

if TYPE_CHECKING:  # torch loads with the runs: `labkit --help` reads this module's names
    import torch

DEFAULT_KS = (0, 1, 2, 3, 4, 6, 8, 12, 16)
LABKIT_DRAFTERS = ("ngram", "early-exit", "mtp", "hybrid")
ENGINES = ("labkit", "transformers", "llama.cpp", "vllm")
SERVED = ("llama.cpp", "vllm")  # engines that run in another process: this process's CPU time says nothing of them
NO_ROUNDS = ("transformers",)  # engines that expose no drafting counters: acceptance is unknown, not 0
# llama.cpp's drafters: ngram-mod is its --spec-default (its own draft lengths); the others run at the bench's ks
LLAMA_METHODS = ("plain", "ngram-mod", "ngram-simple", "ngram-map-k")
VLLM_METHODS = ("plain", "ngram@4")  # labkit.engines.vllm.parse_method: plain, ngram@K


@dataclass(frozen=True)
class Method:
    """One configuration: an engine, a drafting method and a draft length k (0 = plain decoding)."""

    engine: str  # "labkit" | "transformers" | "llama.cpp" | "vllm"
    name: str  # labkit: "plain" or a drafter spec; transformers: one of HF_MODES
    k: int = 0
    decoding: str = "greedy"  # or "sampled": the settings' temperature, top-k, top-p (labkit only)
    policy: str = ""  # "" = k every round; else one of POLICIES, drafting at most k per round

    @property
    def key(self) -> str:
        return (f"{self.engine}/{self.name}/k={self.k}" + (f"/{self.policy}" if self.policy else "")
                + ("" if self.decoding == "greedy" else f"/{self.decoding}"))

    @property
    def served(self) -> bool:
        return self.engine in SERVED

    @property
    def has_rounds(self) -> bool:
        return self.engine not in NO_ROUNDS


HF_GREEDY = Method("transformers", "greedy", 0)
LABKIT_PLAIN = Method("labkit", "plain", 0)


def _hf_modes() -> tuple[str, ...]:
    """labkit.engines.local.HF_MODES, read when settings are made (the engines import torch)."""
    from labkit.engines.local import HF_MODES

    return HF_MODES


@dataclass
class BenchSettings:
    model: str = "gemma3-270m"
    dtype: str | None = None
    device: str | None = None
    drafters: tuple[str, ...] = LABKIT_DRAFTERS
    ks: tuple[int, ...] = DEFAULT_KS
    policies: tuple[str, ...] = ("auto",)  # per labkit drafter, at most its largest k per round
    hf_modes: tuple[str, ...] = field(default_factory=_hf_modes)  # every mode of TransformersEngine
    categories: tuple[str, ...] = CATEGORIES  # with a prompts file: left as is, every category of the file
    prompts_per_category: int | None = None  # None: 5 of each built-in category, every prompt of a prompts file
    prompts_file: str | None = None  # the user's prompts (labkit.measure.prompts.load_prompts), not the built-in set
    max_new_tokens: int = 128
    repeats: int = 3
    early_exit_layers: int = 6  # the same L for labkit's early-exit drafter and transformers' assistant_early_exit
    assistant: str | None = None  # draft model (HF id or folder): HF assistant_model and labkit draft-model
    threads: str | int = "auto"
    cache: str = "dynamic"  # labkit's KV cache: "dynamic" or "static" (preallocated)
    compile_mode: str | None = None  # torch.compile labkit's per-round forward (implies the static cache)
    quick: bool = False  # tiny random models, a few tokens: seconds, for tests
    seed: int = 0
    temperature: float = 0.0  # > 0: labkit configurations run sampled too, next to greedy
    top_k: int | None = None
    top_p: float | None = None
    progress: bool = True
    engines: tuple[str, ...] = ("labkit", "transformers")  # + "llama.cpp": llama-server on the same GGUF
    llama_server: str | None = None  # the llama-server binary (default: $LABKIT_LLAMA_SERVER or labkit's build)
    llama_methods: tuple[str, ...] = LLAMA_METHODS
    vllm_methods: tuple[str, ...] = VLLM_METHODS  # one vLLM server per method, on the embedded model

    def __post_init__(self) -> None:
        if self.prompts_file is not None:  # a Path too; kept as text so bench.json can write the settings
            self.prompts_file = os.fspath(self.prompts_file)

    def sampling(self) -> str:
        """The sampled settings in words, e.g. "T=1 top-k=64 top-p=0.95"."""
        return " ".join([f"T={self.temperature:g}"] + ([f"top-k={self.top_k}"] if self.top_k else [])
                        + ([f"top-p={self.top_p:g}"] if self.top_p else []))

    def check(self) -> None:
        """One-line ValueErrors for settings that cannot run, before anything loads."""
        bench_prompts(self)  # first: it needs no torch, and a bad prompts file is the likeliest mistake
        from labkit.core.draft_length import POLICIES
        from labkit.core.sampling import MAX_K

        if any(not 0 <= k <= MAX_K for k in self.ks):
            raise ValueError(f"ks: every k must be in 0..{MAX_K}, got {list(self.ks)}")
        if unknown := [p for p in self.policies if p not in POLICIES]:
            raise ValueError(f"policies: unknown {', '.join(unknown)}; choose from {', '.join(POLICIES)} (or none)")
        if unknown := [e for e in self.engines if e not in ENGINES]:
            raise ValueError(f"engines: unknown {', '.join(unknown)}; choose from {', '.join(ENGINES)}")
        if (self.temperature < 0 or (self.top_k is not None and self.top_k < 1)
                or (self.top_p is not None and not 0 < self.top_p <= 1)):
            raise ValueError("sampling: need --temperature >= 0, --top-k >= 1, --top-p in (0, 1] (Gemma: 1.0, 64, "
                             "0.95)")
        if "vllm" in self.engines:
            _check_vllm(self)


def _check_vllm(s: BenchSettings) -> None:
    """vLLM's methods and its install, before any model loads (one line each)."""
    from labkit.engines.vllm import parse_method
    from labkit.engines.vllm_install import VLLMError, find_python

    for method in s.vllm_methods:
        parse_method(method)
    if s.model != "gemma3-270m":
        raise ValueError("engines: vllm runs the embedded model only (--model gemma3-270m)")
    try:
        find_python()
    except VLLMError as e:
        raise ValueError("vllm: not installed: run `labkit vllm-server install`") from e


@dataclass
class Workload:
    """Everything the runs share: the target, the prompts as ids, the optional assistant, the engines."""

    target: Any
    prompts: dict[str, list[torch.Tensor]]
    assistant: Any = None  # a transformers model usable as assistant_model (None when the pair does not allow one)
    engines: dict[str, Any] = field(default_factory=dict)  # Method.key -> its Engine; all closed at the run's end
    verify_cost: VerifyCost | None = None  # measured before the runs: the "auto" policy uses it
    skipped: dict[str, str] = field(default_factory=dict)  # method or drafter -> why it was not run


def quick_settings(**overrides: Any) -> BenchSettings:
    """Tiny random models, short runs: the whole bench in seconds (tests, smoke checks)."""
    base = dict(model="tiny", dtype="fp32", device="cpu",
                drafters=("ngram", "early-exit:1", "draft-model", "mtp", "hybrid"),
                ks=(0, 2, 4), prompts_per_category=1, max_new_tokens=16, repeats=2, early_exit_layers=1,
                threads=1, quick=True, progress=False)
    base.update(overrides)
    return BenchSettings(**base)


def load_workload(s: BenchSettings) -> Workload:
    """The target (embedded, any model, or tiny random ones in quick mode) and the prompts as token ids."""
    if s.quick:  # tiny_pair's shapes, with a sliding window long enough for the static cache
        from labkit.models.load import Target
        from labkit.models.tiny import tiny_model

        t = tiny_model(64, layers=3, hidden=48, seed=s.seed, sliding_window=128)
        d = tiny_model(64, layers=1, hidden=32, seed=s.seed + 1000, sliding_window=128)
        target, assistant = Target(t, None, "tiny-target"), d
    else:
        from labkit.models.load import load_target

        target = load_target(s.model, dtype=s.dtype, device=s.device, progress=s.progress)
        assistant = None
        if s.assistant:
            assistant = load_target(s.assistant, dtype=target.dtype, device=target.device, progress=False).model
    return Workload(target, prompt_ids(target, s), assistant)


def prompt_ids(target: Any, s: BenchSettings) -> dict[str, list[torch.Tensor]]:
    """Tokenize each prompt once; tiny models get seeded random ids with a repeated stretch (so lookup can hit)."""
    import torch

    out: dict[str, list[torch.Tensor]] = {}
    dev = target.device
    texts = bench_prompts(s)
    if target.tokenizer is None:
        g = torch.Generator().manual_seed(s.seed)
        for c, chosen in texts.items():
            ids = [torch.randint(3, target.vocab_size, (8,), generator=g) for _ in chosen]
            out[c] = [torch.cat([x, x, x[:4]]).to(dev) for x in ids]
        return out
    for c, chosen in texts.items():
        out[c] = [torch.tensor(target.tokenizer(p)["input_ids"], dtype=torch.long, device=dev) for p in chosen]
    return out


def bench_prompts(s: BenchSettings) -> dict[str, list[str]]:
    """{category: [prompt, ...]} the bench runs: the prompts file's (every prompt, or the first
    ``prompts_per_category`` of each when given; ``categories`` narrows them when set to other than the built-in
    six), else ``prompts_per_category`` (default 5) of each built-in category. One-line ValueErrors."""
    if s.prompts_per_category is not None and s.prompts_per_category < 1:
        raise ValueError(f"prompts_per_category: must be >= 1, got {s.prompts_per_category}")
    if s.prompts_file is not None:
        texts, where = load_prompts(s.prompts_file).by_category(), f"--prompts {s.prompts_file}"
        categories = tuple(texts) if s.categories == CATEGORIES else s.categories
        per = s.prompts_per_category
    else:
        texts, where = prompt_set(), "the built-in set"
        categories, per = s.categories, s.prompts_per_category or 5
    if unknown := [c for c in categories if c not in texts]:
        raise ValueError(f"categories: unknown {', '.join(map(repr, unknown))} in {where}; choose from "
                         f"{', '.join(texts)}")
    return {c: texts[c][:per] for c in categories}


def plan(s: BenchSettings, w: Workload) -> list[Method]:
    """Every configuration to run: labkit plain + drafters x k, transformers greedy + assisted modes x k.

    A spec may carry its own ks after "@" (``early-exit@1,2``): slow methods need not sweep every k.
    """
    decodings = ["greedy", "sampled"] if s.temperature > 0 else ["greedy"]
    methods = [Method("labkit", "plain", 0, d) for d in decodings] if 0 in s.ks else []
    for spec in s.drafters:
        name, ks = spec_ks(spec, s.ks)
        methods += [Method("labkit", name, k, d) for d in decodings for k in ks]
        if ks:
            methods += [Method("labkit", name, max(ks), d, policy) for d in decodings for policy in s.policies]
    for spec in s.hf_modes:
        mode, ks = spec_ks(spec, s.ks)
        if mode == "greedy":
            methods.insert(0, HF_GREEDY)
        elif mode == "assistant" and w.assistant is None:
            w.skipped["transformers/assistant"] = "no assistant model for this target (pass --assistant ID)"
        else:
            methods += [Method("transformers", mode, k) for k in ks]
    if HF_GREEDY not in methods:
        methods.insert(0, HF_GREEDY)  # the baseline every ratio is taken against
    if "llama.cpp" in s.engines:
        for name in s.llama_methods:
            ks = [0] if name in ("plain", "ngram-mod") else [k for k in s.ks if k > 0]
            if name.startswith("synthetic-"):
                from labkit.engines.llama_cpp import synthetic_alpha

                synthetic_alpha(name)  # a bad alpha fails here, before any server starts
            methods += [Method("llama.cpp", name, k) for k in ks]
    if "vllm" in s.engines:
        from labkit.engines.vllm import parse_method

        methods += [Method("vllm", *parse_method(name)) for name in s.vllm_methods]
    return methods


def spec_ks(spec: str, default: tuple[int, ...]) -> tuple[str, list[int]]:
    """A spec and its own ks ("ngram@4,8" -> ("ngram", [4, 8])); without "@", the drafting ks of ``default``."""
    name, _, ks = spec.partition("@")
    return name, [k for k in (tuple(int(x) for x in ks.split(",") if x.strip()) if ks else default) if k > 0]
