"""Server log files: the last lines (for errors and `serve logs`) and following new output."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

_TAIL_CHUNK = 64 * 1024


def tail_lines(path: Path, count: int = 20) -> list[str]:
    """The last `count` lines of `path` (reading only its end); [] when it does not exist."""
    try:
        with open(path, "rb") as file:
            file.seek(0, 2)
            size = file.tell()
            file.seek(max(0, size - _TAIL_CHUNK * max(1, count // 100 + 1)))
            data = file.read()
    except FileNotFoundError:
        return []
    lines = data.decode("utf-8", errors="replace").splitlines()
    return lines[-count:] if count > 0 else []


class LogFollower:
    """Reads what was appended to a log file since the last call, whole lines only."""

    def __init__(self, path: Path, *, from_end: bool = False) -> None:
        self.path = path
        self._offset = path.stat().st_size if from_end and path.exists() else 0
        self._partial = b""

    def read_new(self) -> str:
        try:
            with open(self.path, "rb") as file:
                file.seek(self._offset)
                data = file.read()
        except FileNotFoundError:
            return ""
        self._offset += len(data)
        data = self._partial + data
        complete, newline, self._partial = data.rpartition(b"\n")
        return (complete + newline).decode("utf-8", errors="replace")

    def flush(self) -> str:
        """Everything left, including an unterminated last line."""
        text = self.read_new()
        rest, self._partial = self._partial, b""
        return text + (rest.decode("utf-8", errors="replace") + "\n" if rest else "")


def follow(
    follower: LogFollower,
    write: Callable[[str], None],
    keep_going: Callable[[], bool],
    *,
    interval: float = 0.2,
) -> None:
    """Write new log text as it arrives while `keep_going()`, then what is left."""
    while keep_going():
        text = follower.read_new()
        if text:
            write(text)
        else:
            time.sleep(interval)
    text = follower.flush()
    if text:
        write(text)
