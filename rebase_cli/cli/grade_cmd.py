"""`rebase grade FILE.jsonl --dataset NAME`: grade model outputs (filled by the grading work)."""

import typer


def grade() -> None:
    """Grade a JSONL file of model outputs against a dataset."""
    raise typer.Exit(1)
