"""The store's database functions under one name, for the callers that import them from here.

Each lives in the module of its concept: runs, leases, problems, trees, aggregates."""

from rebase_cli.store.aggregates import run_totals
from rebase_cli.store.leases import (
    Lease,
    acquire_lease,
    close_run,
    lease_held_error,
    live_lease,
    renew_lease,
)
from rebase_cli.store.problems import add_problems, get_problem, problems_of_run
from rebase_cli.store.runs import (
    create_run,
    delete_run,
    find_finished,
    find_resumable,
    list_runs,
    looks_like_run_id,
    resolve_run,
    set_run_capabilities,
)
from rebase_cli.store.trees import (
    commit_level,
    commit_levels,
    load_allocations,
    load_tree,
)

__all__ = [
    "Lease",
    "acquire_lease",
    "add_problems",
    "close_run",
    "commit_level",
    "commit_levels",
    "create_run",
    "delete_run",
    "find_finished",
    "find_resumable",
    "get_problem",
    "lease_held_error",
    "list_runs",
    "live_lease",
    "load_allocations",
    "load_tree",
    "looks_like_run_id",
    "problems_of_run",
    "renew_lease",
    "resolve_run",
    "run_totals",
    "set_run_capabilities",
]
