"""Persistence: SQLModel tables, engine set-up, migrations and the repository."""
