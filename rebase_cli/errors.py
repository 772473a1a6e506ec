"""Known, user-facing errors.

Every error a user can cause or fix (bad input, missing data, unreachable server, a database
the code cannot use) is a `RebaseError`. The CLI's single error boundary prints it as one line
on stderr and exits with `exit_code`; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class RebaseError(Exception):
    """An error with a one-line message that names the problem and, via `hint`, the fix."""

    exit_code: int = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        """The message and hint joined on a single line (newlines folded)."""
        text = self.message if not self.hint else f"{self.message} ({self.hint})"
        return " ".join(text.split())


class UsageError(RebaseError):
    """Arguments that cannot work together; exit code 2 like any usage error."""

    exit_code = 2


class ConfigError(RebaseError):
    """A search configuration or template that is invalid."""


class DatasetError(RebaseError):
    """A dataset that cannot be found, downloaded, verified or parsed."""


class StoreError(RebaseError):
    """The database cannot be opened, migrated or written."""


class ReadOnlyStoreError(StoreError):
    """The database file (or its folder) cannot be written; reading it still works."""


class NotFoundError(RebaseError):
    """A run, problem or server that does not exist."""


class EndpointError(RebaseError):
    """A policy or reward server answered with an error or could not be reached."""


class ServeError(RebaseError):
    """A model server could not be started, found healthy or stopped."""


class RunLockedError(RebaseError):
    """Another live process holds the lease on a run."""
