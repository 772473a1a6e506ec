"""`rebase report`, `rebase tree`, `rebase export`."""


def report() -> None:
    """Accuracy, compute and plots for one or more runs."""


def tree() -> None:
    """Show the search tree of one problem."""


def export() -> None:
    """Export a run's finished answers."""
