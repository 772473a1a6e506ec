"""Persistence: SQLModel tables, engine set-up, migrations, and a module per stored concept."""
