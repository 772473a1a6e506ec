"""`rebase serve ...`: launch and manage model servers."""

import typer

app = typer.Typer(help="Launch and manage policy and reward servers.", no_args_is_help=True)


@app.command("status")
def status() -> None:
    """Show the servers started by rebase."""
