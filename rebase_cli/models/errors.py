"""The error every model-preparation failure is reported as."""

from __future__ import annotations

from rebase_cli.errors import RebaseError


class ModelError(RebaseError):
    """A model directory that cannot be downloaded, verified, converted or written."""
