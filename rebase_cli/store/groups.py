"""Run groups (sweeps): the stored plan of a group and the runs that belong to it.
Each public function is exactly one transaction."""

from __future__ import annotations

import json

from sqlmodel import col, select

from rebase_cli.errors import ConfigError
from rebase_cli.store.database import Database
from rebase_cli.store.models import Run, RunGroup


def save_group(db: Database, name: str, spec: dict) -> RunGroup:
    """Store a new group's plan, or return the group of that name if its plan is the same.

    A group is one sweep: reusing its name for another plan is refused, since resuming it would
    then silently run something else."""
    text = json.dumps(spec, sort_keys=True)
    with db.write() as session:
        group = session.exec(select(RunGroup).where(RunGroup.name == name)).first()
        if group is not None:
            if json.loads(group.spec_json) != json.loads(text):
                raise ConfigError(
                    f"group {name!r} was started with another sweep",
                    f"finish it with `rebase search --group {name}`, or choose another --group",
                )
            return group
        group = RunGroup(name=name, spec_json=text)
        session.add(group)
        session.flush()
        session.refresh(group)
        return group


def get_group(db: Database, name: str) -> RunGroup | None:
    with db.read() as session:
        return session.exec(select(RunGroup).where(RunGroup.name == name)).first()


def find_group_run(db: Database, name: str, fingerprint: str) -> Run | None:
    """The newest run of group `name` with this config fingerprint, whatever its status."""
    with db.read() as session:
        return session.exec(
            select(Run)
            .where(Run.group_name == name, Run.fingerprint == fingerprint)
            .order_by(col(Run.id).desc())
        ).first()


def list_groups(db: Database) -> list[RunGroup]:
    with db.read() as session:
        return list(session.exec(select(RunGroup).order_by(col(RunGroup.id))).all())
