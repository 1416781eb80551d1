"""The project's evaluation prompt set (6 categories x 5 prompts, never used for training), and the user's own
prompts from a file (``load_prompts``: `labkit bench`, `labkit demo` and `labkit tune` take ``--prompts FILE``)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

CATEGORIES = ("conversation", "code", "summarization", "qa", "math", "translation")
DEFAULT_CATEGORY = "user"  # a prompt's category when the file does not give one
RESERVED_CATEGORIES = ("all",)  # the bench's pooled rows are category "all"
# Every prompt runs once per configuration and repeat: 1,000 prompts x 128 tokens x ~20 configurations x 3 repeats
# is days of decoding on a CPU at ~20 tok/s. A longer file is most likely a whole data set: sample it first.
MAX_PROMPTS = 1000
MAX_BYTES = 32 * 2**20  # read whole before parsing: a file this large is a data set, not a prompt list
FORMATS = ('a text file with one prompt per line (blank lines skipped), or JSONL (.jsonl) with one '
           '{"prompt": "...", "category": "..."} object per line (category optional, default "user")')
JSONL_FIX = 'each line is {"prompt": "...", "category": "..."}'


@cache
def prompt_set() -> dict[str, list[str]]:
    """{category: [prompt, ...]} for the six categories."""
    data = json.loads(resources.files("labkit").joinpath("data/prompts.json").read_text(encoding="utf-8"))
    return {c: list(data[c]) for c in CATEGORIES}


class Prompt(NamedTuple):
    category: str
    text: str
    line: int  # 1-based line in its file


@dataclass(frozen=True)
class PromptFile:
    """The user's prompts, in file order, and which file (path and sha256 of the bytes read) they came from."""

    path: str
    sha256: str
    format: str  # "text" or "jsonl"
    prompts: tuple[Prompt, ...]

    def by_category(self) -> dict[str, list[str]]:
        """{category: [prompt, ...]}: every prompt, categories in order of first appearance (as ``prompt_set``)."""
        out: dict[str, list[str]] = {}
        for p in self.prompts:
            out.setdefault(p.category, []).append(p.text)
        return out

    def texts(self) -> list[str]:
        """Every prompt, in file order."""
        return [p.text for p in self.prompts]

    def describe(self) -> dict[str, Any]:
        """What a result records so it says which prompts it measured."""
        return {"path": self.path, "sha256": self.sha256, "format": self.format, "prompts": len(self.prompts),
                "categories": {c: len(v) for c, v in self.by_category().items()}}


def load_prompts(path: str | os.PathLike[str]) -> PromptFile:
    """The prompts in ``path``: text (one per line) or JSONL (the ``.jsonl`` suffix, or every non-blank line starts
    with "{"; a ``.txt`` file is always text). A bad file raises a one-line ValueError naming the file, the line
    and the fix."""
    where = f"--prompts {os.fspath(path)}"
    data = _read(Path(path), where)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ValueError(f"{where}: line {line}: not UTF-8 (byte 0x{data[e.start]:02x}); save the file as UTF-8"
                         ) from None
    # split on "\n" only: line numbers as editors count them (str.splitlines also splits on \f, \x1c, ...)
    lines = [(n, s.removesuffix("\r")) for n, s in enumerate(text.split("\n"), 1) if s.strip()]
    suffix = Path(path).suffix.lower()
    jsonl = suffix == ".jsonl" or (suffix != ".txt" and bool(lines)
                                   and all(s.lstrip().startswith("{") for _, s in lines))
    if not lines:
        raise ValueError(f"{where}: no prompts (the file is empty or only blank lines); write {FORMATS}")
    if len(lines) > MAX_PROMPTS:
        raise ValueError(f"{where}: line {lines[MAX_PROMPTS][0]}: more than {MAX_PROMPTS} prompts; each runs once per "
                         f"configuration and repeat, so {MAX_PROMPTS} is already days on a CPU: keep a sample "
                         f"(e.g. shuf -n 200 {os.fspath(path)})")
    prompts = tuple(_json_prompt(s, n, where) if jsonl else Prompt(DEFAULT_CATEGORY, s, n) for n, s in lines)
    return PromptFile(str(Path(path).resolve()), hashlib.sha256(data).hexdigest(), "jsonl" if jsonl else "text",
                      prompts)


def _read(path: Path, where: str) -> bytes:
    """The file's bytes, or a one-line ValueError for a file that is missing, a folder, too large or unreadable."""
    if path.suffix.lower() == ".json":
        raise ValueError(f"{where}: a .json file is not read; write {FORMATS} (a JSON array of objects converts with "
                         f"jq -c '.[]' {path} > {path.with_suffix('.jsonl')})")
    if path.is_dir():
        raise ValueError(f"{where}: is a folder; pass a file: {FORMATS}")
    try:
        if path.stat().st_size > MAX_BYTES:
            raise ValueError(f"{where}: larger than {MAX_BYTES // 2**20} MiB, more than any prompt list; keep a sample "
                             f"of at most {MAX_PROMPTS} prompts")
        return path.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"{where}: no such file; pass {FORMATS}") from None
    except OSError as e:
        raise ValueError(f"{where}: cannot read it ({e.strerror or type(e).__name__})") from None


def _json_prompt(line: str, n: int, where: str) -> Prompt:
    """One JSONL line as a Prompt, or a one-line ValueError naming line ``n`` and the fix."""
    at = f"{where}: line {n}"
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"{at}: not valid JSON ({e.msg} at column {e.colno}); {JSONL_FIX}") from None
    if not isinstance(obj, dict) or "prompt" not in obj:
        got = f"an object with keys {', '.join(map(repr, obj))}" if isinstance(obj, dict) else _shown(obj)
        raise ValueError(f'{at}: expected a JSON object with a "prompt" string, got {got}; {JSONL_FIX}')
    prompt, category = obj["prompt"], obj.get("category")
    if not isinstance(prompt, str):
        raise ValueError(f'{at}: "prompt" must be a string, got {_shown(prompt)}; {JSONL_FIX}')
    if not prompt.strip():
        raise ValueError(f'{at}: "prompt" is empty; give it text, or delete the line')
    if category is None:
        return Prompt(DEFAULT_CATEGORY, prompt, n)
    if not isinstance(category, str) or not category.strip():
        raise ValueError(f'{at}: "category" must be a non-empty string, got {_shown(category)}; leave it out for '
                         f'"{DEFAULT_CATEGORY}"')
    if category in RESERVED_CATEGORIES:
        raise ValueError(f'{at}: category "{category}" is reserved for the bench\'s rows over every category; pick '
                         "another name")
    return Prompt(category, prompt, n)


def _shown(value: Any) -> str:
    """A JSON value in words, short: 'a number 5', 'an array [1, 2]'."""
    kinds = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number",
             float: "a number", type(None): "null"}
    text = json.dumps(value, ensure_ascii=False)
    kind = kinds.get(type(value), type(value).__name__)
    return kind if value is None else f"{kind} {text if len(text) <= 40 else text[:37] + '...'}"
