"""Alembic environment for rebase. Migrations run on an open connection handed over by
`rebase_cli.store.migrate` (config.attributes["connection"]), never from a URL of their own."""

from alembic import context

from rebase_cli.store.models import SQLModel

target_metadata = SQLModel.metadata


def run_migrations() -> None:
    connection = context.config.attributes["connection"]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite cannot ALTER most things; batch mode copies tables
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
