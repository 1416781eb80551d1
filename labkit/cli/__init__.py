"""The `labkit` command: every subcommand's parser and dispatch, one module per job, each imported here.

Every argument is checked before any model loads, and a bad one answers in one line naming the fix. Commands import
heavy libraries (torch, transformers) inside their functions, so `labkit --help` stays fast.
"""

from __future__ import annotations

import argparse
import sys

from labkit.cli import bench, checks, doctor, generate, llama_server, train, vllm_server
from labkit.cli.args import quiet_for_json

# the order `labkit --help` lists them in
COMMANDS = (generate, bench, train, doctor, llama_server, vllm_server, checks)


class Parser(argparse.ArgumentParser):
    """argparse, but an error is one line (no usage block) and exits 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"labkit: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    ap = Parser(prog="labkit", description="See and measure speculative decoding.")
    sub = ap.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    return ap


def _one_line(e: BaseException) -> bool:
    """A library error meant for the user: ValueError, EngineError or ModelNotAvailableError (one line each)."""
    if isinstance(e, ValueError):
        return True
    load = sys.modules.get("labkit.models.load")  # imported by then whenever a model was asked for
    engines = sys.modules.get("labkit.engines.base")  # imported by then whenever an engine ran
    return bool(load and isinstance(e, load.ModelNotAvailableError) or engines and isinstance(e, engines.EngineError))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "json", False):
            quiet_for_json()
        return int(args.func(args) or 0)
    except (ValueError, RuntimeError) as e:
        if not _one_line(e):
            raise
        print(f"labkit: error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("labkit: stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
