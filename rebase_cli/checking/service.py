"""Running the probes against connected clients: the cheap part (what `rebase search` runs
before a new run) and the full check (`rebase check`, which adds rollouts on two questions).

Cheap: server kinds and versions, n, seed and sampling, stop reporting, label tokens, and one
scoring request — about eight short requests. Full: plus up to max_depth step requests on each
of `ROLLOUT_PROBLEMS` dataset questions, which on a CPU model takes a while.
"""

from __future__ import annotations

from collections.abc import Sequence

from rebase_cli.checking import policy_probes, reward_probes, rollouts
from rebase_cli.checking.findings import CheckReport, Finding, Tally
from rebase_cli.checking.server_kind import kind_finding
from rebase_cli.clients.policy import PolicyClient
from rebase_cli.clients.reward import HttpReward
from rebase_cli.domain import Problem
from rebase_cli.prompts import PromptTemplate
from rebase_cli.runner.config import SearchConfig

ROLLOUT_PROBLEMS = 2


async def run_checks(
    policy: PolicyClient,
    reward: HttpReward,
    template: PromptTemplate,
    problems: Sequence[Problem],
    config: SearchConfig,
    *,
    full: bool,
) -> CheckReport:
    """Probe both servers; `full` adds the rollouts. `problems` must not be empty (the first
    one is the PRM's test question, the first ROLLOUT_PROBLEMS the rollouts'). The sampling
    probes use the run's own temperature (at 0, seeds are reported as irrelevant)."""
    if not problems:
        raise ValueError("checks need at least one problem")
    tally = Tally()
    policy_model = await policy.model_id()
    reward_model = await reward.model_id()
    findings: list[Finding] = [
        await kind_finding("policy", policy.endpoint, policy_model),
        await kind_finding("reward", reward.endpoint, reward_model),
    ]
    findings += await policy_probes.policy_findings(
        policy.endpoint,
        policy_model,
        template.render(problems[0].question),
        stop=template.stop,
        temperature=config.temperature,
        seed=config.seed,
        tally=tally,
    )
    findings.append(await reward_probes.label_finding(reward, template, tally, reward_model))
    findings.append(await reward_probes.variation_finding(reward, template, problems[0], tally))
    if full:
        paths = [
            await rollouts.rollout(
                policy,
                template,
                problem,
                max_step_tokens=config.max_step_tokens,
                max_tokens=config.max_tokens,
                max_depth=config.max_depth,
                temperature=config.temperature,
                top_p=config.top_p,
                seed=config.seed,
                tally=tally,
            )
            for problem in problems[:ROLLOUT_PROBLEMS]
        ]
        findings += rollouts.rollout_findings(paths, template)
    return CheckReport(
        findings=tuple(findings),
        policy_url=policy.base_url,
        reward_url=reward.base_url,
        template=template.name,
        reward_protocol=reward.protocol,
        full=full,
        retries=tally.retries,
    )
