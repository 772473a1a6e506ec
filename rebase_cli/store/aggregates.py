"""Aggregates over a run's problems and nodes (what the summary line and `rebase runs` show)."""

from __future__ import annotations

from rebase_cli.store.database import Database


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
