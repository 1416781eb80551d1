"""The device check's report: PASS / FAIL / INFO / SKIP lines, the final table, the JSON, and the time budget."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from typing import Any


class Report:
    """Collects PASS / FAIL / INFO lines (the final table and the JSON) and keeps the time budget."""

    def __init__(self, budget_s: float):
        self.t0 = time.perf_counter()
        self.budget_s = budget_s
        self.failures: list[str] = []
        self.rows: list[dict[str, Any]] = []  # {"section", "name", "status", "detail"}
        self.data: dict[str, Any] = {}  # measured numbers and results, for the JSON
        self._section = ""

    def left(self) -> float:
        return self.budget_s - (time.perf_counter() - self.t0)

    def say(self, text: str) -> None:
        print(f"[{time.perf_counter() - self.t0:6.1f}s] {text}", flush=True)

    def _row(self, status: str, name: str, detail: str) -> None:
        self.rows.append({"section": self._section, "name": name, "status": status, "detail": detail})

    def check(self, name: str, ok: bool, detail: str = "") -> None:
        self.say(f"{'PASS' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}")
        self._row("PASS" if ok else "FAIL", name, detail)
        if not ok:
            self.failures.append(name)

    def info(self, name: str, detail: str) -> None:
        self.say(f"INFO {name}: {detail}")
        self._row("INFO", name, detail)

    def section(self, name: str, fn: Callable[[], Any], need_s: float = 0.0) -> Any:
        self._section = name
        if self.left() < need_s:
            self.say(f"SKIP {name}: {self.left():.0f}s left of the budget, it needs ~{need_s:.0f}s")
            self._row("SKIP", name, f"{self.left():.0f}s left of the budget, needs ~{need_s:.0f}s")
            return None
        self.say(f"== {name}")
        try:
            return fn()
        except Exception as e:  # noqa: BLE001  (report and go on: the other sections still say something)
            self.check(name, False, f"{type(e).__name__}: {str(e)[:200]}")
            traceback.print_exc(limit=3)
            return None

    def table(self) -> str:
        """Every check and measurement, one line each."""
        w = max([len(r["name"]) for r in self.rows] + [10])
        lines = [f"{'status':<6}  {'check / measurement':<{w}}  detail", "-" * (w + 40)]
        lines += [f"{r['status']:<6}  {r['name']:<{w}}  {r['detail']}" for r in self.rows]
        return "\n".join(lines)
