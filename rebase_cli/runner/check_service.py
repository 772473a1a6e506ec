"""`rebase check` as a service: resolve the servers exactly as `rebase search` would (URLs,
`sim`, or the registered servers), then probe them (rebase_cli/checking)."""

from __future__ import annotations

import asyncio

from rebase_cli.checking.findings import CheckReport
from rebase_cli.checking.service import run_checks
from rebase_cli.datasets import load_dataset
from rebase_cli.errors import ConfigError
from rebase_cli.prompts import load_template
from rebase_cli.runner.service import EndpointRequest, connected_clients
from rebase_cli.runner.setup import RunRequest
from rebase_cli.store.database import Database

# `rebase check` takes the search options; the budget is irrelevant to it but required by the
# config, so a placeholder fills it when none is given.
PLACEHOLDER_BUDGET = 1


async def check_servers(
    db: Database, run_request: RunRequest, endpoints: EndpointRequest, *, full: bool
) -> CheckReport:
    """Probe the policy and reward a search with these options would use."""
    if not run_request.dataset:
        raise ConfigError("no dataset given", "pass --dataset gsm8k|math500|PATH")
    overrides = {"budget": PLACEHOLDER_BUDGET, **run_request.overrides}
    preview = RunRequest(run_request.dataset, overrides, config_file=run_request.config_file)
    config = preview.new_config()
    assert config is not None  # no --run: always a new config
    dataset = await asyncio.to_thread(load_dataset, run_request.dataset, fields=run_request.fields)
    if not dataset.problems:
        raise ConfigError(f"dataset {run_request.dataset} has no problems", "use another one")
    template = load_template(config.template)
    async with connected_clients(db, endpoints, config, dataset) as (policy, reward, _):
        return await run_checks(policy, reward, template, dataset.problems, config, full=full)
