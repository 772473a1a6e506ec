"""Sampling plans on deterministic SGLang: one native `/generate` batch per parent (n inputs,
one `sampling_seed` each) against n seeded `n=1` requests per parent, with vLLM's single
`n`-request as the reference, on the simulator modelling a GPU.

    REBASE_DATA_DIR=../shared/data python benchmarks/bench_sampling_plan.py
        [--problems 40] [--budget 16] [--base-ms 20] [--prompt-token-ms 0.4]
        [--output-token-ms 40] [--max-running 256]

Both SGLang plans sample the same children (seed + i for child i), so their trees must agree;
only the number of HTTP requests and the server's schedule differ. The policy simulator runs
the `sglang-deterministic` flavour, then the `vllm` flavour; the PRM is a second simulator.
Figures: search wall time, policy requests per node, and each plan's wall time over the
`/generate` batch's, measured in the same run. On a real GPU the per-request overhead
(`--base-ms`) and prefix caching decide the ratio; the simulator models both.
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
    parser.add_argument("--problems", type=int, default=40)
    parser.add_argument("--budget", type=int, default=16)
    add_gpu_model_options(parser)
    args = parser.parse_args()
    latency = gpu_model_flags(args)
    header(
        f"sampling plans: {args.problems} GSM8K problems, budget {args.budget}; policy server: "
        + gpu_model_text(args)
    )
    plans = [
        ("sglang-deterministic", "/generate batch", []),
        ("sglang-deterministic", "n=1 requests", ["--samples-per-request", "1"]),
        ("vllm", "one n-request", []),
    ]
    results = []
    with (
        start_simulator(*latency, role="reward") as reward,
        tempfile.TemporaryDirectory() as tmp,
    ):
        for index, (flavour, label, extra) in enumerate(plans):
            with start_simulator("--flavour", flavour, *latency, role="policy") as policy:
                sim_reset(reward.url)
                cli = run_cli(
                    Path(tmp) / f"plan{index}.db",
                    search_args(
                        policy.url,
                        reward.url,
                        problems=args.problems,
                        budget=args.budget,
                        extra=extra,
                    ),
                )
                summary = cli.summary()
                stats = sim_stats(policy.url)
            requests = sum(stats["requests"].values())
            nodes = summary["nodes"]
            results.append((flavour, label, summary["wall_seconds"], nodes, requests))
            print(
                f"{flavour:21} {label:16} wall {summary['wall_seconds']:7.1f} s  {nodes:,} nodes  "
                f"{requests:,} policy requests ({requests / nodes:.2f} per node)  "
                f"duplicate samples {stats['duplicate_samples']}  "
                f"reproducible {summary['reproducible']}"
            )
    batch = results[0]
    print()
    for flavour, label, wall, nodes, _ in results[1:]:
        tree = "same tree" if nodes == batch[3] else f"{nodes} vs {batch[3]} nodes"
        print(f"{flavour} {label}: {wall / batch[2]:.2f}x the /generate batch's wall ({tree})")


if __name__ == "__main__":
    main()
