"""Creating a run, or finding the run to resume and checking that its config still matches."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from rebase_cli.datasets import FieldMap
from rebase_cli.domain import Dataset
from rebase_cli.errors import ConfigError
from rebase_cli.prompts import load_template
from rebase_cli.runner.config import (
    ConfigFile,
    SearchConfig,
    build_config,
    differing_keys,
    fingerprint,
)
from rebase_cli.store.aggregates import run_totals
from rebase_cli.store.database import Database
from rebase_cli.store.groups import find_group_run
from rebase_cli.store.models import Run
from rebase_cli.store.problems import add_problems
from rebase_cli.store.runs import (
    create_run,
    find_finished,
    find_resumable,
    looks_like_run_id,
    resolve_run,
)


@dataclass(frozen=True)
class Endpoints:
    """Where the policy and reward models are served, and what they call themselves."""

    policy_url: str
    policy_model: str
    reward_url: str
    reward_model: str

    @property
    def simulated(self) -> bool:
        return self.policy_model.startswith("sim-") or self.reward_model.startswith("sim-")


@dataclass(frozen=True)
class RunRequest:
    """What the user asked for: only explicitly given values are in `overrides`; the config
    file, if any, comes already read (`ConfigFile.read`, once per command)."""

    dataset: str | None
    overrides: dict[str, Any]
    config_file: ConfigFile | None = None
    fields: FieldMap | None = None
    resume: bool = False
    run_ref: str | None = None
    name: str | None = None
    group: str | None = None  # a sweep's group: its run with this config is continued

    @property
    def file_values(self) -> dict[str, Any]:
        return self.config_file.values if self.config_file is not None else {}

    def new_config(self) -> SearchConfig | None:
        """The validated config a new run would get: the file's values under the flags (None
        when resuming a named run, whose config is stored with it)."""
        if self.run_ref is not None:
            return None
        return build_config({**self.file_values, **self.overrides})


class RunAlreadyDone(Exception):
    """The run a request would continue has finished and the request adds no problems to it.

    Not an error: the CLI says so and points at the report instead of starting a duplicate."""

    def __init__(self, run: Run, problems: int, by_resume: bool) -> None:
        super().__init__(f"run-{run.id} is already done")
        self.run = run
        self.problems = problems
        self.by_resume = by_resume


@dataclass(frozen=True)
class PreparedRun:
    run: Run
    config: SearchConfig
    dataset: Dataset
    resumed: bool
    note: str
    # Requests the policy server runs at once, as it says (None: it does not say); known once
    # the clients are connected, and what an auto concurrency is sized from.
    policy_capacity: int | None = None
    # The order in which the policy server takes waiting requests, when it goes by the
    # priorities the search sends (clients.queue_priority); None: first come, first served.
    policy_queue_priority: str | None = None


def check_run_name(name: str | None) -> None:
    """A run name must be reachable by name: not empty, not `latest`, not a run id (`run-42`
    or `42`, which `--run` and `rebase report` read as ids), no surrounding spaces."""
    if name is None:
        return
    if not name.strip():
        raise ConfigError(
            "--name is empty", "give a name such as --name gsm8k-n16, or leave it out"
        )
    if name != name.strip():
        raise ConfigError(f"--name {name!r} has surrounding spaces", "drop them")
    if name == "latest" or looks_like_run_id(name):
        raise ConfigError(
            f"--name {name!r} would be read as a run id, not as a name",
            "choose a name with a letter in it that is not `latest`, e.g. --name gsm8k-n16",
        )


def prepare_run(
    db: Database,
    request: RunRequest,
    endpoints: Endpoints,
    dataset: Dataset,
    config: SearchConfig | None = None,
) -> PreparedRun:
    """Create a new run or pick the one to resume, and register its problems.

    `dataset` is the loaded dataset the request names (for `--run`, the run's own); `config`
    is the request's config when the caller has it already (`request.new_config()`, or for
    `--run` `continued_config`)."""
    if request.run_ref is not None:
        prepared = _resume_named(db, request, dataset, config)
    else:
        config = config or request.new_config()
        assert config is not None
        prepared = _new_or_matching(db, request, config, endpoints, dataset)
    problems = prepared.dataset.problems
    if prepared.config.limit is not None:
        problems = problems[: prepared.config.limit]
    add_problems(db, prepared.run.id, problems)
    return prepared


def run_to_continue(
    db: Database, request: RunRequest, dataset: Dataset, config: SearchConfig | None = None
) -> Run | None:
    """The existing run this request continues, found without writing anything: the run of
    `--run`, or with `--resume` the newest unfinished run with this config's fingerprint
    (`config` as for `prepare_run`).

    Raises RunAlreadyDone when that run (or, with `--resume`, the newest finished run with the
    fingerprint when none is unfinished) is done and the request's `--limit` adds no problems."""
    check_run_name(request.name)
    if request.run_ref is not None:
        # A config that differs from the run's is refused first: it is an error either way.
        run = _resume_named(db, request, dataset, config).run
        _refuse_if_done(db, run, request, dataset, by_resume=False)
        return run
    if not request.resume:
        return None
    config = config or request.new_config()
    assert config is not None
    digest = fingerprint(config, dataset.sha256, load_template(config.template).digest())
    match = find_resumable(db, digest)
    if match is not None:
        return match
    finished = find_finished(db, digest)
    if finished is not None:
        _refuse_if_done(db, finished, request, dataset, by_resume=True)
        return finished
    return None


def _refuse_if_done(
    db: Database,
    run: Run,
    request: RunRequest,
    dataset: Dataset,
    *,
    by_resume: bool,
) -> None:
    if run.status != "done":
        return
    limit = request.overrides.get("limit", request.file_values.get("limit"))
    if limit is None:
        limit = SearchConfig.model_validate_json(run.config_json).limit
    wanted = len(dataset.problems[:limit]) if limit is not None else len(dataset.problems)
    have = run_totals(db, run.id)["problems"]
    if wanted <= have:
        raise RunAlreadyDone(run, have, by_resume)


def continued_config(run: Run, request: RunRequest) -> SearchConfig:
    """The config a continued run searches with: its stored config under the config file's
    values and the flags. Semantic differences are refused by `_resume_named`; operational
    ones (timeouts, in-flight caps, retries) apply to this session's clients."""
    stored = json.loads(run.config_json)
    return build_config({**stored, **request.file_values, **request.overrides})


def _resume_named(
    db: Database, request: RunRequest, dataset: Dataset, wanted: SearchConfig | None = None
) -> PreparedRun:
    """The run of `--run`, refused when the request's config differs from it semantically;
    `wanted` is `continued_config(run, request)` when the caller has it already."""
    run = resolve_run(db, request.run_ref or "")
    stored = SearchConfig(**json.loads(run.config_json))
    wanted = wanted or continued_config(run, request)
    differences = differing_keys(stored, wanted)
    if differences:
        raise ConfigError(
            f"run-{run.id} was made with another config ({'; '.join(differences)})",
            "drop those options to resume it, or start a new run without --run",
        )
    if request.dataset is not None and request.dataset != run.dataset:
        raise ConfigError(
            f"run-{run.id} searches dataset {run.dataset!r}, not {request.dataset!r}",
            "drop --dataset to resume it",
        )
    if dataset.sha256 != run.dataset_sha256:
        raise ConfigError(
            f"dataset {run.dataset} changed since run-{run.id} started "
            f"(sha256 {dataset.sha256[:12]}… ≠ {run.dataset_sha256[:12]}…)",
            "restore the original file, or start a new run",
        )
    digest = fingerprint(wanted, dataset.sha256, load_template(wanted.template).digest())
    if digest != run.fingerprint:
        raise ConfigError(
            f"template {wanted.template!r} changed since run-{run.id} started",
            "restore it to resume this run, or start a new run",
        )
    note = f"resuming run-{run.id} ({run.status})"
    return PreparedRun(run, wanted, dataset, True, note)


def _new_or_matching(
    db: Database,
    request: RunRequest,
    config: SearchConfig,
    endpoints: Endpoints,
    dataset: Dataset,
) -> PreparedRun:
    if request.dataset is None:
        raise ConfigError("no dataset given", "pass --dataset gsm8k|math500|PATH")
    digest = fingerprint(config, dataset.sha256, load_template(config.template).digest())
    if request.group is not None:
        member = find_group_run(db, request.group, digest)
        if member is not None:
            note = (
                f"run-{member.id} of group {request.group} is already done"
                if member.status == "done"
                else f"resuming run-{member.id} of group {request.group} ({member.status})"
            )
            return PreparedRun(member, config, dataset, True, note)
    if request.resume:
        match = find_resumable(db, digest) or find_finished(db, digest)
        if match is not None:
            if "limit" not in request.overrides and "limit" not in request.file_values:
                stored = SearchConfig(**json.loads(match.config_json))
                config = config.model_copy(update={"limit": stored.limit})
            note = f"resuming run-{match.id} (same config fingerprint {digest[:12]})"
            return PreparedRun(match, config, dataset, True, note)
    run = create_run(
        db,
        Run(
            name=request.name,
            method=config.method,
            dataset=request.dataset,
            dataset_sha256=dataset.sha256,
            budget=config.budget,
            config_json=config.model_dump_json(),
            fingerprint=digest,
            policy_url=endpoints.policy_url,
            policy_model=endpoints.policy_model,
            reward_url=endpoints.reward_url,
            reward_model=endpoints.reward_model,
            reward_protocol=config.reward_protocol,
            simulated=endpoints.simulated,
            seed=config.seed,
            group_name=request.group,
        ),
    )
    note = f"started run-{run.id}"
    if request.resume:
        note += " (no unfinished run has this config)"
    return PreparedRun(run, config, dataset, False, note)
