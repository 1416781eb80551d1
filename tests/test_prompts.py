"""The user's own prompts (labkit.measure.prompts.load_prompts): both formats, categories, one-line errors naming
the line and the fix, the CLI's checks before any model loads, and the bench on a prompts file."""

import hashlib
import json
import subprocess
import sys
import time

import pytest

from labkit.measure.prompts import CATEGORIES, DEFAULT_CATEGORY, MAX_PROMPTS, load_prompts, prompt_set


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return p


def test_builtin_set_has_six_categories_of_five():
    assert tuple(prompt_set()) == CATEGORIES and all(len(v) == 5 for v in prompt_set().values())


def test_text_file_one_prompt_per_line_blank_lines_skipped(tmp_path):
    p = _write(tmp_path, "mine.txt", "first prompt\n\n   \nsecond prompt  \r\nthird\n")
    pf = load_prompts(p)
    assert pf.format == "text" and pf.texts() == ["first prompt", "second prompt  ", "third"]
    assert [x.line for x in pf.prompts] == [1, 4, 5]
    assert pf.by_category() == {DEFAULT_CATEGORY: pf.texts()}
    assert pf.sha256 == hashlib.sha256(p.read_bytes()).hexdigest() and pf.path == str(p.resolve())


def test_jsonl_categories_default_and_grouping_in_file_order(tmp_path):
    rows = [{"prompt": "a", "category": "code"}, {"prompt": "b"}, {"prompt": "c", "category": "code", "id": 7},
            {"prompt": "d\nwith a newline", "category": "chat"}, {"prompt": "e", "category": None}]
    p = _write(tmp_path, "mine.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n")
    pf = load_prompts(p)
    assert pf.format == "jsonl"
    assert pf.texts() == ["a", "b", "c", "d\nwith a newline", "e"]
    assert pf.by_category() == {"code": ["a", "c"], "user": ["b", "e"], "chat": ["d\nwith a newline"]}
    assert pf.describe()["categories"] == {"code": 2, "user": 2, "chat": 1}


def test_jsonl_detected_without_the_suffix_but_never_for_txt(tmp_path):
    text = '{"prompt": "x", "category": "c"}\n{"prompt": "y"}\n'
    assert load_prompts(_write(tmp_path, "p", text)).by_category() == {"c": ["x"], "user": ["y"]}
    assert load_prompts(_write(tmp_path, "p.txt", text)).texts() == text.splitlines()
    assert load_prompts(_write(tmp_path, "q", '{"prompt": "x"}\nplain line\n')).format == "text"


BAD = [
    ("p.jsonl", '{"prompt": "ok"}\n\n{"prompt": "ok"}\n[1, 2]\n', "line 4: expected a JSON object with a \"prompt\" "
     "string, got an array [1, 2]"),
    ("p.jsonl", '{"prompt": "ok"}\n{"text": "no prompt key"}\n', "line 2: expected a JSON object with a \"prompt\" "
     "string, got an object with keys 'text'"),
    ("p.jsonl", '{"prompt": "ok"}\n{"prompt": "unterminated\n', "line 2: not valid JSON"),
    ("p.jsonl", 'plain text in a jsonl file\n', "line 1: not valid JSON"),
    ("p.jsonl", '{"prompt": "ok"}\n{"prompt": 5}\n', 'line 2: "prompt" must be a string, got a number 5'),
    ("p.jsonl", '\n{"prompt": "   "}\n', 'line 2: "prompt" is empty'),
    ("p.jsonl", '{"prompt": "x", "category": 3}\n', 'line 1: "category" must be a non-empty string, got a number 3'),
    ("p.jsonl", '{"prompt": "x", "category": ""}\n', 'line 1: "category" must be a non-empty string'),
    ("p.jsonl", '{"prompt": "x", "category": "all"}\n', 'line 1: category "all" is reserved'),
    ("p.txt", "", "no prompts"),
    ("p.txt", "\n  \n\n", "no prompts"),
    ("p.txt", b"fine\nalso fine\ncaf\xe9 in latin-1\n", "line 3: not UTF-8 (byte 0xe9)"),
    ("p.txt", "".join(f"prompt {i}\n" for i in range(MAX_PROMPTS + 1)), f"line {MAX_PROMPTS + 1}: more than "
     f"{MAX_PROMPTS} prompts"),
    ("p.json", '[{"prompt": "x"}]', "jq -c"),
]


@pytest.mark.parametrize("name,text,message", BAD, ids=[m[:40] for _, _, m in BAD])
def test_bad_file_is_one_line_naming_the_file_line_and_fix(tmp_path, name, text, message):
    p = _write(tmp_path, name, text)
    with pytest.raises(ValueError) as e:
        load_prompts(p)
    line = str(e.value)
    assert "\n" not in line and line.startswith(f"--prompts {p}: ") and message in line, line


def test_missing_file_and_folder_are_one_line(tmp_path):
    for path, message in [(tmp_path / "none.txt", "no such file"), (tmp_path, "is a folder")]:
        with pytest.raises(ValueError, match=message) as e:
            load_prompts(path)
        assert "\n" not in str(e.value) and "one prompt per line" in str(e.value)


def test_a_file_too_large_to_be_a_prompt_list_is_one_line(tmp_path, monkeypatch):
    import labkit.measure.prompts as prompts

    monkeypatch.setattr(prompts, "MAX_BYTES", 10)
    with pytest.raises(ValueError, match=f"larger than .*at most {MAX_PROMPTS} prompts") as e:
        load_prompts(_write(tmp_path, "big.txt", "a prompt longer than ten bytes\n"))
    assert "\n" not in str(e.value)


def test_bench_prompts_every_prompt_of_the_file_unless_cut(tmp_path):
    from labkit.measure.bench.settings import BenchSettings, bench_prompts

    rows = [{"prompt": f"p{i}", "category": c} for i, c in enumerate("abaab")]
    p = _write(tmp_path, "p.jsonl", "\n".join(map(json.dumps, rows)))
    assert bench_prompts(BenchSettings(prompts_file=str(p))) == {"a": ["p0", "p2", "p3"], "b": ["p1", "p4"]}
    assert bench_prompts(BenchSettings(prompts_file=str(p), prompts_per_category=2, categories=("b",))) == {
        "b": ["p1", "p4"]}
    assert bench_prompts(BenchSettings(prompts_file=str(p), prompts_per_category=1)) == {"a": ["p0"], "b": ["p1"]}
    with pytest.raises(ValueError, match="categories: unknown 'qa' in --prompts .*; choose from a, b"):
        BenchSettings(prompts_file=str(p), categories=("qa",)).check()
    assert bench_prompts(BenchSettings(categories=("qa",))) == {"qa": prompt_set()["qa"]}


def test_bench_on_a_prompts_file_has_the_files_categories(tmp_path):
    from labkit.measure.bench import quick_settings, run_bench
    from labkit.measure.report import format_table

    rows = [{"prompt": "def f(x):", "category": "mycode"}, {"prompt": "hello"}, {"prompt": "more code",
                                                                                   "category": "mycode"}]
    p = _write(tmp_path, "p.jsonl", "\n".join(map(json.dumps, rows)))
    s = quick_settings(prompts_file=p, prompts_per_category=None, ks=(0, 2), drafters=("ngram",), policies=(),
                       hf_modes=("greedy",), repeats=1)
    result = run_bench(s, tmp_path / "out")
    assert {r["category"] for r in result["rows"]} == {"mycode", "user", "all"}
    assert {c: len(v) for c, v in result["meta"]["prompts"].items()} == {"mycode": 2, "user": 1}
    pf = result["meta"]["prompts_file"]
    assert pf["path"] == str(p.resolve()) and pf["sha256"] == hashlib.sha256(p.read_bytes()).hexdigest()
    assert json.loads((tmp_path / "out" / "bench.json").read_text())["meta"]["prompts_file"] == pf
    assert f"prompts: {p.resolve()} (3 prompts in 2 categories" in format_table(result)


def _labkit(*args):
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "labkit", *args], capture_output=True, text=True, timeout=60)
    return r, time.perf_counter() - t0


@pytest.mark.parametrize("command", [["bench", "--quick"], ["bench"], ["demo"]])
def test_cli_bad_prompts_file_is_one_line_exit_2_within_5_s(tmp_path, command):
    p = _write(tmp_path, "bad.jsonl", '{"prompt": "ok"}\n{"prompt": "ok"}\n"just a string"\n')
    r, elapsed = _labkit(*command, "--prompts", str(p), "--out" if command[0] == "bench" else "--repeats",
                         str(tmp_path) if command[0] == "bench" else "1")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, r.stderr
    assert lines == [f'labkit: error: --prompts {p}: line 3: expected a JSON object with a "prompt" string, got a '
                     'string "just a string"; each line is {"prompt": "...", "category": "..."}'], r.stderr
    assert r.stdout == "" and elapsed < 5, f"{elapsed:.1f}s: the file is checked before any model loads"


def test_cli_help_names_both_formats():
    from labkit.cli import build_parser

    for command in ("bench", "demo"):
        sub = build_parser()._subparsers._group_actions[0].choices[command]
        text = sub.format_help()
        assert "--prompts FILE" in text and "JSONL" in text and "one prompt per line" in text, text


def test_cli_bench_prompts_reach_the_settings(tmp_path):
    from labkit.cli import build_parser
    from labkit.cli.bench import settings_from_args

    p = str(_write(tmp_path, "p.txt", "x\n"))
    s = settings_from_args(build_parser().parse_args(["bench", "--prompts", p]))
    assert s.prompts_file == p and s.prompts_per_category is None
    s = settings_from_args(build_parser().parse_args(["bench", "--quick", "--prompts", p, "--prompts-per-category",
                                                      "3"]))
    assert s.prompts_file == p and s.prompts_per_category == 3 and s.quick
