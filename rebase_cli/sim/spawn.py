"""Start `python -m rebase_cli.sim` as a child process and learn its URL.

The child prints `rebase-sim <role> listening on http://HOST:PORT` once its socket listens;
this module waits for that line (so `--port 0` works without a port race) and hands back the
process and URL. Used by tests, benchmarks and `rebase serve --engine sim`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from rebase_cli.errors import ServeError

READY_MARKER = " listening on "


@dataclass
class SpawnedSimulator:
    """A simulator child process. Use as a context manager or call stop()."""

    process: subprocess.Popen[str]
    url: str
    command: list[str]

    def stop(self, timeout: float = 10.0) -> int:
        """Terminate the child (SIGTERM, then SIGKILL after `timeout`); its exit code."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        return self.process.returncode

    def __enter__(self) -> SpawnedSimulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def simulator_command(args: Sequence[str]) -> list[str]:
    """The command line that runs the simulator with `args` under this interpreter."""
    return [sys.executable, "-m", "rebase_cli.sim", *args]


def spawn(
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
    stderr: int | None = None,
) -> SpawnedSimulator:
    """Run the simulator with `args` (e.g. ["--role", "both", "--port", "0"]) and wait until
    it listens. Raises ServeError with the child's first output if it exits or stays silent."""
    command = simulator_command(args)
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if stderr is None else stderr,
        text=True,
        env={**os.environ, **(env or {})},
    )
    lines: list[str] = []
    ready = threading.Event()

    def read_until_ready() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            if READY_MARKER in line:
                ready.set()
                break
        ready.set()

    reader = threading.Thread(target=read_until_ready, daemon=True)
    reader.start()
    ready.wait(timeout)
    if not lines or READY_MARKER not in lines[-1]:
        if process.poll() is None:
            process.kill()
        process.wait(10)
        said = " / ".join(lines[-3:]) or "nothing"
        raise ServeError(f"the simulator did not start (it said: {said})", "check its flags")
    # Keep draining the pipe so a chatty child never blocks on a full pipe buffer.
    threading.Thread(target=_drain, args=(process,), daemon=True).start()
    return SpawnedSimulator(process, lines[-1].rsplit(" ", 1)[1].strip(), command)


def _drain(process: subprocess.Popen[str]) -> None:
    assert process.stdout is not None
    for _ in process.stdout:
        pass
