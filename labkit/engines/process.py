"""A serving engine's process, started and always stopped by labkit: llama.cpp's llama-server and vLLM's server.

A server started here listens on 127.0.0.1 on a free port, is ready when ``/health`` answers, and is stopped on exit
(atexit), on an exception, on Ctrl-C, and (Linux) when the process that started it is killed: the child asks the
kernel for SIGTERM when its parent dies (PR_SET_PDEATHSIG). A server that spawns workers of its own (vLLM's engine
core) is started in a session of its own, and stopping it kills the whole process group, so no worker outlives it.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labkit.engines.base import EngineError, EngineRun

_LIVE: set[ServerProcess] = set()


def _stop_all() -> None:
    for server in list(_LIVE):
        server.stop()


atexit.register(_stop_all)


def server_threads() -> int:
    """The threads a server gets: labkit's one thread policy, as for labkit's own loop."""
    from labkit.threads import choose_threads

    return choose_threads()[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_taken(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _libc_prctl() -> Any:
    """libc's prctl, resolved in the parent: loading a library in the child of a threaded process (torch's threads)
    is not safe between fork and exec, calling an already resolved function is."""
    if sys.platform != "linux":
        return None
    with contextlib.suppress(Exception):
        import ctypes

        return ctypes.CDLL("libc.so.6", use_errno=True).prctl
    return None


_PRCTL = _libc_prctl()


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """In the child, before exec: ``sig`` when the parent dies (PR_SET_PDEATHSIG), so a killed Python (a kernel
    killed from JupyterLab) leaves no server behind."""
    if _PRCTL is not None:
        _PRCTL(1, sig)


def exit_text(code: int | None) -> str:
    """A process's exit status in words: a crash by signal says which (-11 from Popen, 139 from a shell)."""
    signals = {11: "a segmentation fault", 4: "an illegal instruction", 6: "an abort", 7: "a bus error", 9: "SIGKILL"}
    sig = -code if code is not None and code < 0 else code - 128 if code is not None and code > 128 else None
    if sig in signals:
        return f"exit {code}, {signals[sig]}"
    return f"exit {code}"


def last_error(log_path: Path | None) -> str:
    """The most telling line of a server's log (an error line, else the last one)."""
    try:
        lines = [ln.strip() for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
    except (OSError, AttributeError):
        return "no log"
    lines = [ln for ln in lines if not ln.startswith("For further information visit")]  # pydantic's trailer
    errors = [ln for ln in lines if re.search(r"error|failed|couldn't|unable|invalid", ln, re.I)]
    return (errors or lines or ["no output"])[-1][:300]


def read_record(path: Path) -> dict[str, Any]:
    """A server's install or build record in labkit's cache (a JSON object; empty when missing or unreadable)."""
    with contextlib.suppress(OSError, ValueError):
        rec = json.loads(path.read_text())
        if isinstance(rec, dict):
            return rec
    return {}


def write_record(path: Path, rec: dict[str, Any]) -> None:
    """Write a record atomically: a half-written one is never read."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(rec, indent=1))
    os.replace(tmp, path)


def run_logged(cmd: list[str], log: Path, on_line: Callable[[str], None] | None = None) -> int:
    """Run an install or build step, its output appended to ``log`` and each line shown to ``on_line`` (a progress
    bar); returns the exit status. Ctrl-C kills the step."""
    with open(log, "a", encoding="utf-8") as out:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                out.write(line)
                if on_line is not None:
                    on_line(line)
        except BaseException:
            proc.kill()
            raise
        return proc.wait()


class ServerProcess:
    """One server process on 127.0.0.1: subclasses say its ``command()``, its environment and its name (``what``);
    ``error`` is the one-line error class it raises. ``own_group``: start it in a session of its own and kill the
    whole group on stop (for servers that spawn workers)."""

    what = "server"
    error: type[EngineError] = EngineError
    own_group = False
    stop_grace_s = 5.0  # SIGTERM, then SIGKILL after this
    # sent by the kernel when labkit's process dies: SIGTERM lets a server stop its own workers (vLLM does); a server
    # with none may take SIGKILL (a llama-server once caught that one SIGTERM and kept running)
    death_signal = signal.SIGTERM

    def __init__(self, port: int | None = None, ready_timeout: float = 120.0):
        self.port, self.ready_timeout = port, ready_timeout
        self.proc: subprocess.Popen | None = None
        self._ended: int | None = None  # the exit status, kept after stop()
        self.listened = False  # /health answered once
        self.log_path: Path | None = None
        self.started_s: float | None = None  # seconds from start to the first /health answer

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str] | None:
        return None  # this process's own

    def check(self) -> None:
        """Raise ``error`` before anything starts when the server cannot (a missing model file)."""

    def healthy(self, status: int, body: str) -> bool:
        return status == 200

    def crash_hint(self, code: int | None) -> str:
        return ""

    def start(self, progress: Callable[[float], None] | None = None) -> ServerProcess:
        """Start and wait for /health; ``progress(seconds)`` is called every few seconds while it starts."""
        self.check()
        if self.port is None:
            self.port = free_port()
        elif port_taken(self.port):
            raise self.error(f"port {self.port} on 127.0.0.1 is taken: pass another port, or none (labkit "
                             "picks a free one)")
        fd, log = tempfile.mkstemp(prefix=f"{self.what.replace(' ', '-')}-", suffix=".log")
        self.log_path = Path(log)
        with os.fdopen(fd, "w") as out:
            self.proc = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=self.environment(),
                                         start_new_session=self.own_group,
                                         preexec_fn=self._preexec() if _PRCTL is not None else None)
        _LIVE.add(self)
        try:
            self._wait_ready(progress)
        except BaseException:
            self.stop()
            raise
        return self

    def _preexec(self) -> Callable[[], None]:
        sig = int(self.death_signal)  # read here, in the parent: the child only calls prctl
        return lambda: die_with_parent(sig)

    def _wait_ready(self, progress: Callable[[float], None] | None) -> None:
        t0 = time.monotonic()
        deadline, told = t0 + self.ready_timeout, t0
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                code = self.proc.returncode
                raise self.error(f"{self.what} exited at start ({exit_text(code)}): {self.last_error()}"
                                 f"{self.crash_hint(code)}; its log is {self.log_path}")
            with contextlib.suppress(OSError, ValueError):
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if self.healthy(r.status, r.read().decode()):
                        self.listened, self.started_s = True, time.monotonic() - t0
                        return
            if progress is not None and time.monotonic() - told >= 10:
                told = time.monotonic()
                progress(told - t0)
            time.sleep(0.2)
        raise self.error(f"{self.what} did not answer /health within {self.ready_timeout:.0f} s; its log "
                         f"is {self.log_path}")

    def last_error(self) -> str:
        return last_error(self.log_path)

    def exit_text(self) -> str:
        """How the process ended, in words ("running" while it runs)."""
        return "running" if self.returncode is None else exit_text(self.returncode)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        """The exit status once the process has ended (also after ``stop``), else None."""
        return self._ended if self.proc is None else self.proc.poll()

    def stop(self) -> None:
        """Terminate (SIGTERM, then SIGKILL after ``stop_grace_s``), the whole group when ``own_group``; safe to
        call twice."""
        proc, self.proc = self.proc, None
        _LIVE.discard(self)
        if proc is None:
            return
        if proc.poll() is None:
            self._signal(proc, signal.SIGTERM)
            try:
                proc.wait(timeout=self.stop_grace_s)
            except subprocess.TimeoutExpired:
                self._signal(proc, signal.SIGKILL)
                proc.wait(timeout=5)
        if self.own_group:  # workers left behind by a leader that died or exited first
            self._signal(proc, signal.SIGKILL)
        self._ended = proc.returncode

    def _signal(self, proc: subprocess.Popen, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if self.own_group:
                os.killpg(proc.pid, sig)  # the session leader's pid is the group's id
            else:
                proc.send_signal(sig)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ServedEngine:
    """A server labkit started, behind the engine protocol through ``ServerEngine``: subclasses set ``name``,
    ``server`` (started) and ``client``. A request to a dead server is one line, and the server is stopped."""

    name: str
    server: ServerProcess
    client: Any

    def _connect(self, model: str | None = None) -> None:
        from labkit.engines.server import ServerEngine

        try:
            self.client = ServerEngine(self.server.url, name=self.name, model=model)
        except BaseException:
            self.server.stop()
            raise

    def run(self, prompt: Any, max_new_tokens: int, top: int = 0) -> EngineRun:
        from labkit.engines.server import ServerError

        what = self.server.what
        if not self.server.alive():
            why = self.server.last_error()
            self.server.stop()
            raise self.server.error(f"{self.name}: the {what} stopped ({why}); restart the run (labkit starts a "
                                    "new one)")
        try:
            return self.client.run(prompt, max_new_tokens, top)
        except ServerError as e:
            if self.server.proc is not None:  # a reset connection may come a moment before the exit status
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.server.proc.wait(timeout=1)
            if not self.server.alive():
                code, why = self.server.returncode, self.server.last_error()
                self.server.stop()  # its workers too
                raise self.server.error(f"{self.name}: the {what} died during the request ({exit_text(code)}: "
                                        f"{why}){self.server.crash_hint(code)}") from None
            raise e

    def close(self) -> None:
        self.server.stop()

    def __enter__(self) -> ServedEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
