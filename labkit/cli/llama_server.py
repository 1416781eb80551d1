"""`labkit llama-server build|path`: build llama.cpp's server once (labkit.engines.llama_build), or say which binary
labkit runs."""

from __future__ import annotations

import argparse
from typing import Any


def cmd_llama_server(a: argparse.Namespace) -> int:
    from labkit.engines.llama_build import build, find_binary

    if a.action == "build":
        print(build(jobs=a.jobs, force=a.force, progress=not a.no_progress))
    else:
        print(find_binary(a.llama_server))
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("llama-server", help="llama.cpp's server for `labkit bench --engines`: build it once, or "
                                            "say which binary labkit runs")
    p.add_argument("action", choices=("build", "path"), help="build: only the llama-server target from the "
                   "llama-cpp-python sdist (cmake, about 9 min on 2 cores, cached); path: the binary labkit uses")
    p.add_argument("--jobs", type=int, default=None, help="parallel compile jobs (default: every core)")
    p.add_argument("--force", action="store_true", help="build again even when a cached binary exists")
    p.add_argument("--llama-server", default=None, metavar="PATH", help="with path: check this binary instead")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_llama_server)
