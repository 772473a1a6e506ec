"""Keeping the server busy: wall time of `rebase search` over the ideal server-bound time, with
the simulator modelling a GPU, at our default concurrency and at 8 problems at a time (how the
paper's code runs).

    REBASE_DATA_DIR=../shared/data python benchmarks/bench_server_busy.py
        [--problems 200] [--budget 16] [--base-ms 20] [--prompt-token-ms 0.4]
        [--output-token-ms 40] [--max-running 256] [--concurrency 32,8]

Two simulator processes stand in for two GPUs, one serving the policy and one the PRM. Each
models a continuous-batching server: a request holds one slot per sequence for
`base + uncached prompt tokens x prompt-token-ms + longest output x output-token-ms` (prefix
caching on, as in SGLang), and at most `max-running` sequences run at once; the rest queue.
Each server counts the slot-seconds it was sent, so `slot_seconds / max_running` is the least
wall time any client could need for that work (the server-bound ideal); with two servers the
ideal is the larger of the two, since they can work in parallel.

The defaults are a GPU slowed down about 4x (40 ms per decode step, a batch of up to 256
sequences, prefill at 2,500 tokens/s per request) so that the servers, not our process on a
small machine, are the bottleneck, while the whole script still runs in about five minutes:
the ideal is ~50 s for 200 problems at budget 16 and our CPU time is below it. What matters is
the ratios, not the absolute seconds. The search is
the same for every concurrency (same seed: the node counts must agree), so only the schedule
differs.

Figures: for each concurrency, wall time of the search (from its summary), the ideal, their
ratio (1.0 = the busier server never idled), each server's utilisation (its ideal / wall) and
mean queueing, and the ratio of the two wall times.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _common import (
    add_gpu_model_options,
    gpu_model_flags,
    gpu_model_text,
    header,
    run_cli,
    search_args,
    sim_reset,
    sim_stats,
    start_simulator,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", type=int, default=200)
    parser.add_argument("--budget", type=int, default=16)
    add_gpu_model_options(parser)
    parser.add_argument("--concurrency", default="32,8", help="comma-separated; first is ours")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]

    header(
        f"server busy: {args.problems} GSM8K problems, budget {args.budget}; each server: "
        + gpu_model_text(args)
    )
    flags = gpu_model_flags(args)
    results = []
    with (
        start_simulator(*flags, role="policy") as policy,
        start_simulator(*flags, role="reward") as reward,
        tempfile.TemporaryDirectory() as tmp,
    ):
        for concurrency in levels:
            sim_reset(policy.url)
            sim_reset(reward.url)
            cli = run_cli(
                Path(tmp) / f"c{concurrency}.db",
                search_args(
                    policy.url,
                    reward.url,
                    problems=args.problems,
                    budget=args.budget,
                    extra=["--concurrency", str(concurrency)],
                ),
            )
            summary = cli.summary()
            stats = {"policy": sim_stats(policy.url), "reward": sim_stats(reward.url)}
            wall = summary["wall_seconds"]
            ideal = max(s["ideal_seconds"] for s in stats.values())
            results.append((concurrency, wall, ideal, summary["nodes"]))
            print(f"\n--concurrency {concurrency}: {summary['nodes']:,} nodes")
            print(
                f"  search wall {wall:8.1f} s   ideal {ideal:8.1f} s   wall / ideal "
                f"{wall / ideal:5.2f}   (our CPU {cli.cpu:.1f} s, process wall {cli.wall:.1f} s)"
            )
            for role, s in stats.items():
                requests = sum(s["requests"].values())
                cached = s["cached_prompt_tokens"] / max(s["prompt_tokens"], 1)
                print(
                    f"  {role:6} ideal {s['ideal_seconds']:7.1f} s  utilisation "
                    f"{s['ideal_seconds'] / wall:6.1%}  busiest {s['max_in_flight']:4d}/"
                    f"{s['max_running']} sequences  queued {s['queue_seconds'] / requests:6.3f}"
                    f" s/request  {requests:,} requests  prefix-cached {cached:.0%}"
                )
    if len(results) > 1:
        base = results[0]
        print()
        for concurrency, wall, ideal, nodes in results[1:]:
            same = "same tree" if nodes == base[3] else f"DIFFERENT trees: {nodes} vs {base[3]}"
            print(
                f"--concurrency {concurrency} takes {wall / base[1]:.2f}x the wall time of "
                f"--concurrency {base[0]} ({same}; wall/ideal {wall / ideal:.2f} vs "
                f"{base[1] / base[2]:.2f})"
            )


if __name__ == "__main__":
    main()
