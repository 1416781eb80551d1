"""`labkit doctor`: measure this machine (labkit.measure.doctor) and say whether speculative decoding can pay here."""

from __future__ import annotations

import argparse
from typing import Any


def cmd_doctor(a: argparse.Namespace) -> int:
    import json

    from transformers.utils import logging as hf_logging

    from labkit.measure.doctor import diagnose, render

    hf_logging.disable_progress_bar()  # the report is the output
    hf_logging.set_verbosity_error()
    d = diagnose(device=a.device)
    print(json.dumps(d.as_dict()) if a.json else render(d))
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("doctor", help="measure this machine (under a minute): can speculative decoding pay here?")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON instead of text")
    p.set_defaults(func=cmd_doctor)
