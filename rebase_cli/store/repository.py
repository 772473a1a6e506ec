"""Runs, problems and trees. Each public function is exactly one transaction."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, func, update
from sqlmodel import Session, col, select

from rebase_cli.domain import LevelCommit, Problem, ProblemStatus, RunStatus
from rebase_cli.errors import NotFoundError, RunLockedError, StoreError
from rebase_cli.store.database import Database
from rebase_cli.store.models import AllocationRow, NodeRow, ProblemRow, Run, utcnow

_RUN_REF = re.compile(r"^(?:run-)?(\d+)$")


# ----------------------------------------------------------------------------------- runs


def create_run(db: Database, run: Run) -> Run:
    """Insert a run; a duplicate name is a StoreError naming the clash."""
    with db.write() as session:
        if run.name is not None:
            clash = session.exec(select(Run).where(Run.name == run.name)).first()
            if clash is not None:
                raise StoreError(
                    f"a run named {run.name!r} already exists (run-{clash.id})",
                    "choose another --name, or resume it with --run " + f"run-{clash.id}",
                )
        session.add(run)
        session.flush()
        session.refresh(run)
        return run


def looks_like_run_id(ref: str) -> bool:
    """`run-42` or `42`: what `resolve_run` reads as an id first."""
    return _RUN_REF.match(ref.strip()) is not None


def resolve_run(db: Database, ref: str) -> Run:
    """Find a run by `run-42`, `42`, its name, or `latest`."""
    with db.read() as session:
        return _resolve_run(session, ref)


def _resolve_run(session: Session, ref: str) -> Run:
    ref = ref.strip()
    run: Run | None
    if ref == "latest":
        run = session.exec(select(Run).order_by(col(Run.id).desc())).first()
    elif match := _RUN_REF.match(ref):
        run = session.get(Run, int(match.group(1)))
        if run is None:
            run = session.exec(select(Run).where(Run.name == ref)).first()
    else:
        run = session.exec(select(Run).where(Run.name == ref)).first()
    if run is None:
        raise NotFoundError(
            f"no run {ref!r} in {_db_name(session)}", "list runs with `rebase runs`"
        )
    return run


def _db_name(session: Session) -> str:
    bind = session.get_bind()
    return str(getattr(bind, "url", "the database")).removeprefix("sqlite:///")


def list_runs(db: Database) -> list[tuple[Run, dict[str, int]]]:
    """Every run with its problem counts by status, newest first."""
    with db.read() as session:
        runs = session.exec(select(Run).order_by(col(Run.id).desc())).all()
        rows = session.exec(
            select(ProblemRow.run_id, ProblemRow.status, func.count()).group_by(
                ProblemRow.run_id, ProblemRow.status
            )
        ).all()
    counts: dict[int, dict[str, int]] = {}
    for run_id, status, count in rows:
        counts.setdefault(run_id, {})[status] = count
    return [(run, counts.get(run.id or 0, {})) for run in runs]


def find_resumable(db: Database, fingerprint: str) -> Run | None:
    """The newest run with this fingerprint that is not done."""
    with db.read() as session:
        return session.exec(
            select(Run)
            .where(Run.fingerprint == fingerprint, Run.status != RunStatus.DONE.value)
            .order_by(col(Run.id).desc())
        ).first()


def find_finished(db: Database, fingerprint: str) -> Run | None:
    """The newest run with this fingerprint that is done."""
    with db.read() as session:
        return session.exec(
            select(Run)
            .where(Run.fingerprint == fingerprint, Run.status == RunStatus.DONE.value)
            .order_by(col(Run.id).desc())
        ).first()


def set_run_status(db: Database, run_id: int, status: RunStatus, *, wall_seconds: float = 0.0):
    """Set a run's status and add `wall_seconds` to its wall time."""
    with db.write() as session:
        session.exec(
            update(Run)
            .where(col(Run.id) == run_id)
            .values(
                status=status.value,
                updated_at=utcnow(),
                wall_seconds=Run.wall_seconds + wall_seconds,
            )
        )


def set_run_capabilities(db: Database, run_id: int, capabilities: dict) -> None:
    """Record what the servers of a run support (n>1, matched_stop, ...)."""
    with db.write() as session:
        session.exec(
            update(Run)
            .where(col(Run.id) == run_id)
            .values(capabilities_json=json.dumps(capabilities, sort_keys=True))
        )


def delete_run(db: Database, run_id: int) -> None:
    """Delete a run and everything under it (foreign keys cascade)."""
    with db.write() as session:
        deleted = session.exec(delete(Run).where(col(Run.id) == run_id))
        if deleted.rowcount == 0:
            raise NotFoundError(f"no run run-{run_id}", "list runs with `rebase runs`")


# ---------------------------------------------------------------------------------- lease


@dataclass(frozen=True)
class Lease:
    """An unexpired lease on a run."""

    owner: str
    seconds_left: int


def lease_held_error(run_id: int, lease: Lease, doing: str | None = None) -> RunLockedError:
    """The refusal when another process holds the run's lease; `doing` (e.g. "delete") names
    what was refused."""
    prefix = f"cannot {doing}: " if doing else ""
    return RunLockedError(
        f"{prefix}run-{run_id} is being searched by another process ({lease.owner})",
        "wait for it to finish or stop it (Ctrl-C, or `kill PID` where it runs); if it was "
        f"killed on another host, retry in {lease.seconds_left}s when its lease expires",
    )


def live_lease(db: Database, run_id: int) -> Lease | None:
    """The run's lease if one is held and has not expired (None for a missing run)."""
    now = utcnow()
    with db.read() as session:
        run = session.get(Run, run_id)
    if run is None or run.lease_owner is None or run.lease_expires_at is None:
        return None
    if run.lease_expires_at <= now:
        return None
    return Lease(run.lease_owner, int((run.lease_expires_at - now).total_seconds()) + 1)


def acquire_lease(
    db: Database,
    run_id: int,
    owner: str,
    ttl: timedelta,
    holder_is_gone: Callable[[str], bool] = lambda holder: False,
) -> None:
    """Take the run's lease unless another owner holds one that has not expired.

    A process that dies leaves its lease behind; it expires `ttl` after the last heartbeat and is
    then taken over, or at once when `holder_is_gone(holder)` knows the holder no longer exists.
    A refusal changes nothing."""
    now = utcnow()
    with db.write() as session:
        run = session.get(Run, run_id)
        if run is None:
            raise NotFoundError(f"no run run-{run_id}", "list runs with `rebase runs`")
        held = run.lease_owner not in (None, owner) and (
            run.lease_expires_at is not None and run.lease_expires_at > now
        )
        if held and not holder_is_gone(run.lease_owner or ""):
            left = int((run.lease_expires_at - now).total_seconds()) + 1
            raise lease_held_error(run_id, Lease(run.lease_owner or "", left))
        run.lease_owner = owner
        run.lease_expires_at = now + ttl
        run.status = RunStatus.RUNNING.value
        run.updated_at = now
        session.add(run)


def renew_lease(db: Database, run_id: int, owner: str, ttl: timedelta) -> bool:
    """Extend our lease; False if another owner took it over meanwhile."""
    with db.write() as session:
        result = session.exec(
            update(Run)
            .where(col(Run.id) == run_id, col(Run.lease_owner) == owner)
            .values(lease_expires_at=utcnow() + ttl)
        )
        return result.rowcount == 1


def release_lease(db: Database, run_id: int, owner: str) -> None:
    with db.write() as session:
        session.exec(
            update(Run)
            .where(col(Run.id) == run_id, col(Run.lease_owner) == owner)
            .values(lease_owner=None, lease_expires_at=None)
        )


def close_run(
    db: Database, run_id: int, owner: str, status: RunStatus, *, wall_seconds: float = 0.0
) -> bool:
    """Set the final status, add `wall_seconds` and release the lease, if `owner` still holds
    it; False (and nothing changed) if another process took the run over meanwhile, whose
    status is then not ours to set."""
    with db.write() as session:
        result = session.exec(
            update(Run)
            .where(col(Run.id) == run_id, col(Run.lease_owner) == owner)
            .values(
                status=status.value,
                updated_at=utcnow(),
                wall_seconds=Run.wall_seconds + wall_seconds,
                lease_owner=None,
                lease_expires_at=None,
            )
        )
        return result.rowcount == 1


class FencedDatabase(Database):
    """The same database (same engine), for the searches of a run under a lease: every write
    transaction first checks, in that transaction, that `owner` still holds the run's lease,
    and raises RunLockedError otherwise. Reads are not fenced.

    Why: a holder that stalls past its lease (SIGSTOP, a suspended machine) loses the run to
    another process; when it wakes it still has levels in flight. Without this fence it could
    commit one of them first, and the new holder's commit of the same level would then be
    refused as out of order, failing its whole run."""

    def __init__(self, db: Database, run_id: int, owner: str) -> None:
        super().__init__(db.path, db.engine)
        self.run_id = run_id
        self.owner = owner

    @contextmanager
    def write(self) -> Iterator[Session]:
        with super().write() as session:
            holder = session.exec(select(Run.lease_owner).where(Run.id == self.run_id)).first()
            if holder != self.owner:
                raise RunLockedError(
                    f"run-{self.run_id} was taken over by another process",
                    "let that process finish",
                )
            yield session


# ------------------------------------------------------------------------------- problems


def add_problems(db: Database, run_id: int, problems: Iterable[Problem]) -> int:
    """Insert the run's problems that are not there yet (by dataset index); returns how many."""
    with db.write() as session:
        existing = set(
            session.exec(select(ProblemRow.dataset_index).where(ProblemRow.run_id == run_id)).all()
        )
        added = 0
        for problem in problems:
            if problem.index in existing:
                continue
            session.add(
                ProblemRow(
                    run_id=run_id,
                    dataset_index=problem.index,
                    source_id=problem.source_id,
                    question=problem.question,
                    reference_answer=problem.reference_answer,
                    subject=problem.subject,
                    level=problem.level,
                )
            )
            added += 1
        return added


def problems_of_run(db: Database, run_id: int, statuses: Sequence[str] | None = None):
    """The run's problems in dataset order, optionally only those with one of `statuses`."""
    with db.read() as session:
        query = select(ProblemRow).where(ProblemRow.run_id == run_id)
        if statuses is not None:
            query = query.where(col(ProblemRow.status).in_(list(statuses)))
        return list(session.exec(query.order_by(ProblemRow.dataset_index)).all())


def get_problem(db: Database, run_id: int, dataset_index: int) -> ProblemRow:
    with db.read() as session:
        row = session.exec(
            select(ProblemRow).where(
                ProblemRow.run_id == run_id, ProblemRow.dataset_index == dataset_index
            )
        ).first()
    if row is None:
        raise NotFoundError(
            f"run-{run_id} has no problem with dataset index {dataset_index}",
            f"see `rebase runs show run-{run_id}`",
        )
    return row


def mark_problem_running(db: Database, problem_id: int) -> None:
    with db.write() as session:
        session.exec(
            update(ProblemRow)
            .where(col(ProblemRow.id) == problem_id)
            .values(
                status=ProblemStatus.RUNNING.value,
                started_at=func.coalesce(ProblemRow.started_at, utcnow()),
            )
        )


def reset_unfinished(db: Database, run_id: int) -> None:
    """Set problems left `running` by a dead process back to pending (their committed levels
    stay; the next level is redone) and clear failures so a resume retries them."""
    with db.write() as session:
        session.exec(
            update(ProblemRow)
            .where(
                ProblemRow.run_id == run_id,
                col(ProblemRow.status).in_(
                    [ProblemStatus.RUNNING.value, ProblemStatus.FAILED.value]
                ),
            )
            .values(status=ProblemStatus.PENDING.value, error=None)
        )


def fail_problem(db: Database, problem_id: int, error: str) -> None:
    """Mark a problem failed with its error; its committed levels stay."""
    with db.write() as session:
        session.exec(
            update(ProblemRow)
            .where(col(ProblemRow.id) == problem_id)
            .values(status=ProblemStatus.FAILED.value, error=error, finished_at=utcnow())
        )


# ---------------------------------------------------------------------------------- trees


def load_tree(db: Database, problem_id: int) -> list[NodeRow]:
    """All nodes of a problem ordered by (depth, ordinal)."""
    with db.read() as session:
        return list(
            session.exec(
                select(NodeRow)
                .where(NodeRow.problem_id == problem_id)
                .order_by(NodeRow.depth, NodeRow.ordinal)
            ).all()
        )


def load_allocations(db: Database, problem_id: int) -> list[AllocationRow]:
    with db.read() as session:
        return list(
            session.exec(
                select(AllocationRow)
                .where(AllocationRow.problem_id == problem_id)
                .order_by(AllocationRow.depth, AllocationRow.id)
            ).all()
        )


def commit_level(db: Database, problem_id: int, level: LevelCommit, elapsed: float = 0.0) -> None:
    """Persist one depth step of one problem atomically.

    Writes the level's nodes, the allocation that produced them (against the parents at
    depth - 1), the problem's counters and `depth_completed = level.depth`, and when
    `level.finished` its final status. Refuses a level that is not the next one, so a replayed
    level can never duplicate nodes."""
    commit_levels(db, problem_id, [level], elapsed)


def commit_levels(
    db: Database, problem_id: int, levels: Sequence[LevelCommit], elapsed: float = 0.0
) -> None:
    """Persist consecutive levels of one problem in one transaction (whole-solution sampling
    writes all the depths of its paths at once), each as `commit_level` writes it; `elapsed`
    is added once."""
    with db.write() as session:
        problem = session.get(ProblemRow, problem_id)
        if problem is None:
            raise NotFoundError(f"no problem with id {problem_id}")
        for index, level in enumerate(levels):
            _write_level(session, problem, level, elapsed if index == 0 else 0.0)
            session.flush()  # the next level finds these nodes as its parents


def _write_level(session: Session, problem: ProblemRow, level: LevelCommit, elapsed: float) -> None:
    """One level of `commit_levels`, inside its transaction."""
    problem_id = problem.id
    if level.depth != problem.depth_completed + 1:
        raise StoreError(
            f"level {level.depth} of problem {problem_id} does not follow committed level "
            f"{problem.depth_completed}"
        )
    parents: dict[int, int] = {}
    if level.depth > 0:
        rows = session.exec(
            select(NodeRow.ordinal, NodeRow.id).where(
                NodeRow.problem_id == problem_id, NodeRow.depth == level.depth - 1
            )
        ).all()
        parents = {ordinal: node_id for ordinal, node_id in rows}
    for parent_ordinal, weight, children, *subtree in level.allocations:
        session.add(
            AllocationRow(
                problem_id=problem_id,
                depth=level.depth - 1,
                node_id=parents[parent_ordinal],
                weight=weight,
                children=children,
                subtree=subtree[0] if subtree else None,
            )
        )
    for node in level.nodes:
        session.add(
            NodeRow(
                problem_id=problem_id,
                parent_id=None if node.parent_ordinal is None else parents[node.parent_ordinal],
                depth=node.depth,
                ordinal=node.ordinal,
                text=node.text,
                score=node.score,
                path_tokens=node.path_tokens,
                prompt_tokens=node.prompt_tokens,
                completion_tokens=node.completion_tokens,
                finish_reason=node.finish_reason,
                terminal=node.terminal,
                terminal_reason=node.terminal_reason.value if node.terminal_reason else None,
                answer=node.answer,
                seed=node.seed,
            )
        )
    c = level.counters
    problem.depth_completed = level.depth
    problem.policy_prompt_tokens += c.policy_prompt_tokens
    problem.policy_completion_tokens += c.policy_completion_tokens
    problem.reward_tokens += c.reward_tokens
    problem.policy_requests += c.policy_requests
    problem.reward_requests += c.reward_requests
    problem.retries += c.retries
    problem.elapsed_seconds += elapsed
    if problem.started_at is None:
        problem.started_at = utcnow()
    if level.finished:
        problem.status = ProblemStatus.FAILED.value if level.error else ProblemStatus.DONE.value
        problem.error = level.error
        problem.finished_at = utcnow()
    session.add(problem)


def finish_problem(db: Database, problem_id: int, elapsed: float = 0.0) -> None:
    """Mark a problem done after its search stopped (no more levels to commit)."""
    with db.write() as session:
        session.exec(
            update(ProblemRow)
            .where(col(ProblemRow.id) == problem_id)
            .values(
                status=ProblemStatus.DONE.value,
                error=None,
                finished_at=utcnow(),
                elapsed_seconds=ProblemRow.elapsed_seconds + elapsed,
            )
        )


def run_totals(db: Database, run_id: int) -> dict[str, int]:
    """Problem counts by status, node count and token/request/retry sums of a run."""
    with db.read() as session:
        connection = session.connection()
        by_status = dict(
            connection.exec_driver_sql(
                "SELECT status, count(*) FROM problem WHERE run_id = ? GROUP BY status", (run_id,)
            ).all()
        )
        sums = connection.exec_driver_sql(
            "SELECT coalesce(sum(policy_prompt_tokens), 0), "
            "coalesce(sum(policy_completion_tokens), 0), coalesce(sum(reward_tokens), 0), "
            "coalesce(sum(policy_requests), 0), coalesce(sum(reward_requests), 0), "
            "coalesce(sum(retries), 0) FROM problem WHERE run_id = ?",
            (run_id,),
        ).one()
        nodes = connection.exec_driver_sql(
            "SELECT count(*) FROM node JOIN problem ON node.problem_id = problem.id "
            "WHERE problem.run_id = ?",
            (run_id,),
        ).scalar_one()
        answers = connection.exec_driver_sql(
            "SELECT count(*) FROM node JOIN problem ON node.problem_id = problem.id "
            "WHERE problem.run_id = ? AND node.answer IS NOT NULL",
            (run_id,),
        ).scalar_one()
    return {
        "problems": sum(by_status.values()),
        "done": by_status.get("done", 0),
        "failed": by_status.get("failed", 0),
        "pending": by_status.get("pending", 0) + by_status.get("running", 0),
        "nodes": nodes,
        "finished_answers": answers,
        "policy_prompt_tokens": sums[0],
        "policy_completion_tokens": sums[1],
        "reward_tokens": sums[2],
        "policy_requests": sums[3],
        "reward_requests": sums[4],
        "retries": sums[5],
    }
