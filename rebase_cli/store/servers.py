"""The `server` table: servers started by `rebase serve`. Each function is one transaction.

Rows never hold an API key: `api_key_env` names the environment variable clients read it from.
"""

from __future__ import annotations

from sqlmodel import col, select

from rebase_cli.errors import NotFoundError
from rebase_cli.store.database import Database
from rebase_cli.store.models import ServerRow


def add_server(db: Database, row: ServerRow) -> ServerRow:
    """Insert `row` and return it with its id."""
    with db.write() as session:
        session.add(row)
        session.flush()
        session.refresh(row)
        return row


def list_servers(db: Database, role: str | None = None) -> list[ServerRow]:
    """Registered servers, newest first; only `role`'s when given."""
    with db.read() as session:
        query = select(ServerRow).order_by(col(ServerRow.id).desc())
        if role is not None:
            query = query.where(ServerRow.role == role)
        return list(session.exec(query).all())


def update_server(
    db: Database, server_id: int, *, status: str | None = None, model: str | None = None
) -> ServerRow:
    """Set the status and/or model of a server; NotFoundError if it was removed meanwhile."""
    with db.write() as session:
        row = session.get(ServerRow, server_id)
        if row is None:
            raise NotFoundError(f"server {server_id} is no longer registered")
        if status is not None:
            row.status = status
        if model is not None:
            row.model = model
        session.add(row)
        session.flush()
        session.refresh(row)
        return row


def delete_server(db: Database, server_id: int) -> bool:
    """Remove a server's row; False when it was already gone."""
    with db.write() as session:
        row = session.get(ServerRow, server_id)
        if row is None:
            return False
        session.delete(row)
        return True
