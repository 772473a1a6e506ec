"""Scaling out: wall time of the same `rebase search` with 1, 2 and 4 workers per role, each a
simulator modelling one GPU, as ratios to one worker.

    REBASE_DATA_DIR=../shared/data python benchmarks/bench_scale.py
        [--workers 1,2,4] [--problems 64] [--budget 16] [--concurrency 64]
        [--base-ms 20] [--prompt-token-ms 0.4] [--output-token-ms 20] [--max-running 32]

Policy workers (deterministic SGLang: one request per child) sit behind the real SGLang
router (`sglang-router`, cache-aware routing), as
`rebase serve policy --replicas K` runs them; reward servers are given to the search as K URLs
(the router does not proxy the scoring routes), so each problem stays on one of them. Every
worker is a continuous-batching server of `max-running` sequences (see bench_server_busy.py);
the modelled GPU is small so that a handful of problems saturate it.

Figures per worker count: search wall time, its ratio to one worker (ideal: 1/K), the ideal
server-bound time (the busiest worker's slot-seconds / max-running), the orchestrator's CPU
seconds and its CPU share of the wall time. The orchestrator becomes the limit where its CPU
share nears 100% of one core (it is one Python process) while wall time stops falling: then
more servers cannot help. The trees are the same for every K (same seed), which is checked.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from contextlib import ExitStack
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

from rebase_cli.serving import net
from rebase_cli.serving.router import router_command, settle


def start_router(stack: ExitStack, worker_urls: list[str]) -> str:
    """The SGLang router in front of `worker_urls`; its URL once it routes to all of them."""
    port = net.free_port("127.0.0.1")
    process = subprocess.Popen(
        router_command("127.0.0.1", port, worker_urls),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    stack.callback(lambda: (process.terminate(), process.wait(10)))
    url = net.base_url("127.0.0.1", port)
    if settle(url, len(worker_urls)) is None:
        raise SystemExit(f"the router at {url} did not pick up its {len(worker_urls)} workers")
    return url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="1,2,4", help="comma-separated; first is the base")
    parser.add_argument("--problems", type=int, default=64)
    parser.add_argument("--budget", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=64)
    add_gpu_model_options(parser, output_token_ms=20.0, max_running=32)
    args = parser.parse_args()
    counts = [int(k) for k in args.workers.split(",")]

    header(
        f"scale-out: {args.problems} GSM8K problems, budget {args.budget}, concurrency "
        f"{args.concurrency}; each worker: {gpu_model_text(args)}; "
        "policy behind the SGLang router, reward as several URLs"
    )
    flags = gpu_model_flags(args)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in counts:
            with ExitStack() as stack:
                # Deterministic SGLang workers: what the router fronts in a reproducible search.
                policy_flags = [*flags, "--flavour", "sglang-deterministic"]
                policies = [
                    stack.enter_context(start_simulator(*policy_flags, role="policy"))
                    for _ in range(k)
                ]
                rewards = [
                    stack.enter_context(start_simulator(*flags, role="reward")) for _ in range(k)
                ]
                router = start_router(stack, [p.url for p in policies])
                for sim in policies + rewards:
                    sim_reset(sim.url)
                cli = run_cli(
                    Path(tmp) / f"k{k}.db",
                    search_args(
                        router,
                        ",".join(r.url for r in rewards),
                        problems=args.problems,
                        budget=args.budget,
                        extra=["--concurrency", str(args.concurrency)],
                    ),
                )
                summary = cli.summary()
                stats = [sim_stats(s.url) for s in policies + rewards]
            wall = summary["wall_seconds"]
            ideal = max(s["ideal_seconds"] for s in stats)
            spread = [sum(s["requests"].values()) for s in stats]
            results.append((k, wall, ideal, cli.cpu, summary["nodes"]))
            print(
                f"\n{k} worker(s) per role: {summary['nodes']:,} nodes; requests per worker "
                f"(policy | reward): {spread[:k]} | {spread[k:]}"
            )
            print(
                f"  search wall {wall:7.1f} s   ideal {ideal:7.1f} s   orchestrator CPU "
                f"{cli.cpu:6.1f} s ({cli.cpu / wall:5.1%} of the wall time)"
            )
    base = results[0]
    print()
    for k, wall, ideal, cpu, nodes in results:
        same = "same tree" if nodes == base[4] else f"DIFFERENT trees: {nodes} vs {base[4]}"
        print(
            f"{k} worker(s): wall {wall / base[1]:5.2f}x of {base[0]} (ideal {base[0] / k:4.2f}x;"
            f" server-bound ideal {ideal / base[2]:4.2f}x), orchestrator CPU "
            f"{cpu / wall:5.1%} of wall; {same}"
        )


if __name__ == "__main__":
    main()
