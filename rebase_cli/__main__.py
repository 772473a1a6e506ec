"""`python -m rebase_cli` runs the CLI."""

from rebase_cli.cli.app import main

main()
