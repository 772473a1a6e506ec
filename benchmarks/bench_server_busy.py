"""Keeping the server busy: wall time of `rebase search` over the ideal server-bound time, with
the simulator modelling a GPU, at our default concurrency and at 8 problems at a time (how the
paper's code runs).

    REBASE_DATA_DIR=../shared/data python benchmarks/bench_server_busy.py
        [--problems 200] [--budget 16] [--base-ms 20] [--prompt-token-ms 0.4]
        [--output-token-ms 40] [--max-running 256] [--concurrency auto,8]
        [--server-scale 1,8] [--flavour sglang-deterministic] [--queue priority,fcfs] [--json]

Two simulator processes stand in for two GPUs, one serving the policy and one the PRM. Each
models a continuous-batching server: each sequence of a request (a choice, an input of a
batch, a scored item) holds one slot for `base + its uncached prompt tokens x prompt-token-ms
+ its output tokens x output-token-ms` and frees it when done, as SGLang and vLLM schedule
them (prefix caching on, as in SGLang); at most `max-running` sequences run at once, the rest
queue.
Each server counts the slot-seconds it was sent, so `slot_seconds / max_running` is the least
wall time any client could need for that work (the server-bound ideal); with two servers the
ideal is the larger of the two, since they can work in parallel.

The policy simulator plays `--flavour` (default: SGLang with --enable-deterministic-inference,
what a reproducible search runs on): SGLang says in /server_info how many requests it runs at
once, and `auto` (no --concurrency flag, the default) sizes the concurrency from it; on
`--flavour vllm`, which does not say, auto is 32.

The defaults are a GPU slowed down about 4x (40 ms per decode step, a batch of up to 256
sequences, prefill at 2,500 tokens/s per request) so that the servers, not our process on a
small machine, are the bottleneck, while the whole script still runs in a few minutes: the
ideal is ~50 s for 200 problems at budget 16 and our CPU time is below it. What matters is the
ratios, not the absolute seconds. The search is the same for every concurrency (same seed:
the node counts must agree), so only the schedule differs.

`--queue priority,fcfs`: the policy server orders its waiting sequences by the priority the
search sends (SGLang with --enable-priority-scheduling, as `rebase serve policy` starts it:
shallower levels first, see `clients.queue_priority`), then, for comparison, first come,
first served; orders after the first run the first concurrency only.

`--server-scale 1,8` repeats the first (default) concurrency against servers k times as large,
an 8-GPU node for k = 8: k x `max-running` sequences at the same service time per request, so
k times the throughput (data-parallel replicas behind one router; the simulator's cost model
has no other notion of a larger server), with k x `--problems` problems (at most the 1,319 of
GSM8K's test set) so that the ideal stays about the same: each problem is a chain of
dependent requests (levels x per-request latency, which a larger server does not shorten), so
with the same work on a larger server the longest chain, not throughput, would set the wall
time. There our own CPU time matters more: the search must issue requests k times as fast to
keep the server busy.

Figures: for each server size and concurrency, wall time of the search (from its summary),
the ideal, their ratio (1.0 = the busier server never idled), each server's utilisation (its
ideal / wall) and mean queueing, the policy server's mean running sequences over each tenth
of its busy span (sampled every 0.1 s: where it idled, at the start, in the middle or in the
run's tail), and the ratio of the two wall times; then the issue's goal (wall <= 1.05 x ideal
at the default concurrency) with PASS or MISS for each server size and queue order. For each
server size, the first run's trees are also replayed on an ideal server without HTTP, client
or PRM (`_replay.py`): first come, first served and shallower levels first at the same
number of problems at once, and a clairvoyant order (longest remaining path first, every
problem at once) as the best any scheduler could do with these trees. The measured ratio
over the replayed one of the same order is what the requests, scoring and commits between
two levels cost.
`--json` prints the figures as one JSON object on stdout (the text goes to stderr).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import _replay
import httpx
from _common import (
    add_gpu_model_options,
    cpu_seconds,
    gpu_model_flags,
    gpu_model_text,
    header,
    run_cli,
    search_args,
    sim_reset,
    sim_stats,
    start_simulator,
)

from rebase_cli.sim.config import LatencyConfig

GOAL_WALL_OVER_IDEAL = 1.05  # the orchestrator-efficiency issue's goal at the default concurrency
AUTO = "auto"  # the default concurrency: no --concurrency flag
# The policy server's queue: by the priorities the search sends (SGLang as `rebase serve
# policy` starts it, --enable-priority-scheduling), or first come, first served.
QUEUES = {"priority": ["--enable-priority-scheduling"], "fcfs": []}


class LoadSampler:
    """Samples a simulator's running sequences every `period` seconds in a thread, so the run
    can be told apart where the server idled (its start, its middle, its tail)."""

    def __init__(self, url: str, period: float = 0.1) -> None:
        self.url, self.period = url, period
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.wait(self.period):
                running = client.get(f"{self.url}/sim/stats").json()["running_sequences"]
                self.samples.append((time.monotonic(), running))

    def by_tenth(self, capacity: int) -> list[float]:
        """Mean running/capacity in each tenth of the span from the first to the last sample
        with work running."""
        busy = [t for t, running in self.samples if running]
        if not busy:
            return []
        start, span = busy[0], (busy[-1] - busy[0]) or 1.0
        sums, counts = [0.0] * 10, [0] * 10
        for t, running in self.samples:
            if start <= t <= busy[-1]:
                tenth = min(int((t - start) / span * 10), 9)
                sums[tenth] += running / capacity
                counts[tenth] += 1
        return [total / max(count, 1) for total, count in zip(sums, counts, strict=True)]


def run_level(db: Path, policy, reward, concurrency: str, problems: int, args, tag: str):
    """One search of `problems` at `concurrency` (`auto`: no flag) against the two simulators
    (into `db`); its figures (printed too)."""
    policy_url, reward_url = policy.url, reward.url
    sim_reset(policy_url)
    sim_reset(reward_url)
    flag = [] if concurrency == AUTO else ["--concurrency", concurrency]
    sims_cpu = cpu_seconds(policy.process.pid) + cpu_seconds(reward.process.pid)
    with LoadSampler(policy_url) as load:
        cli = run_cli(
            db,
            search_args(policy_url, reward_url, problems=problems, budget=args.budget, extra=flag),
        )
    sims_cpu = cpu_seconds(policy.process.pid) + cpu_seconds(reward.process.pid) - sims_cpu
    summary = cli.summary()
    stats = {"policy": sim_stats(policy_url), "reward": sim_stats(reward_url)}
    wall = summary["wall_seconds"]
    ideal = max(s["ideal_seconds"] for s in stats.values())
    at_once = summary["concurrency"]
    print(
        f"\n{tag}, {summary['problems']} problems, --concurrency {concurrency}"
        f"{f' ({at_once} at once)' if concurrency == AUTO else ''}: {summary['nodes']:,} nodes"
    )
    print(
        f"  search wall {wall:8.1f} s   ideal {ideal:8.1f} s   wall / ideal "
        f"{wall / ideal:6.3f}   (our CPU {cli.cpu:.1f} s, process wall {cli.wall:.1f} s; "
        f"simulators' CPU {sims_cpu:.1f} s)"
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
    late = stats["policy"]["held_seconds"] / max(stats["policy"]["slot_seconds"], 1e-9) - 1
    print(
        f"  policy slots held {late:.1%} longer than modelled (the simulator's own event loop"
        " waking late)"
    )
    tenths = load.by_tenth(stats["policy"]["max_running"])
    print("  policy running, by tenth of its busy span: " + " ".join(f"{x:.0%}" for x in tenths))
    return {
        "concurrency": concurrency,
        "problems_at_once": at_once,
        "problems": summary["problems"],  # --limit beyond the dataset runs all of it
        "nodes": summary["nodes"],
        "wall_seconds": wall,
        "ideal_seconds": ideal,
        "wall_over_ideal": wall / ideal,
        "cpu_seconds": cli.cpu,
        "simulators_cpu_seconds": sims_cpu,
        "policy_slots_held_over_modelled": late,
        "policy_queue_priority": summary.get("policy_queue_priority"),
    }


def replay(db: Path, args: argparse.Namespace, capacity: int, at_once: int) -> dict:
    """The run's trees replayed on an ideal server (see `_replay`), printed; the figures."""
    latency = LatencyConfig(
        base_ms=args.base_ms,
        prompt_token_ms=args.prompt_token_ms,
        output_token_ms=args.output_token_ms,
        max_running=capacity,
    )
    chains = _replay.load_chains(db, latency)
    ideal = _replay.ideal_seconds(chains, capacity)
    cases = [
        ("first come, first served", "arrival", _replay.arrival_order, at_once),
        ("shallower levels first", "shallowest", _replay.shallowest_first, at_once),
        (
            "longest remaining path first (knows every step's length), all at once",
            "clairvoyant",
            _replay.longest_remaining_path_first,
            _replay.ALL_AT_ONCE,
        ),
    ]
    print(
        f"  replayed without HTTP, client or PRM (same trees and cost model; ideal {ideal:.1f} s,"
        " makespan / ideal):"
    )
    figures: dict[str, float] = {"ideal_seconds": ideal}
    for words, key, order, admit in cases:
        seconds = _replay.makespan(chains, capacity, order(chains), admit)
        where = "" if admit == _replay.ALL_AT_ONCE else f", {admit} at once"
        print(f"    {words}{where}: {seconds:.1f} s  {seconds / ideal:.3f}")
        figures[key] = seconds / ideal
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", type=int, default=200)
    parser.add_argument("--budget", type=int, default=16)
    add_gpu_model_options(parser)
    parser.add_argument(
        "--concurrency", default="auto,8", help="comma-separated; the first is ours (auto)"
    )
    parser.add_argument(
        "--flavour", default="sglang-deterministic", help="the server the policy simulator plays"
    )
    parser.add_argument(
        "--server-scale",
        default="1,8",
        help="comma-separated server sizes (x max-running); sizes above 1 run the first "
        "concurrency only",
    )
    parser.add_argument(
        "--queue",
        default="priority,fcfs",
        help="comma-separated policy-server queue orders: priority (SGLang with "
        "--enable-priority-scheduling, as `rebase serve policy` starts it; the search sends "
        "each level's priority) or fcfs; orders after the first run the first concurrency only",
    )
    parser.add_argument("--json", action="store_true", help="figures as JSON on stdout")
    args = parser.parse_args()
    levels = [c.strip() for c in args.concurrency.split(",")]
    queues = [q.strip() for q in args.queue.split(",")]
    for queue in queues:
        if queue not in QUEUES:
            parser.error(f"unknown --queue {queue!r}: use {' or '.join(QUEUES)}")
        if queue == "priority" and not args.flavour.startswith("sglang"):
            parser.error("--queue priority is SGLang's scheduling: use --queue fcfs on vllm")
    scales = [int(k) for k in args.server_scale.split(",")]
    out = sys.stderr if args.json else sys.stdout
    with contextlib.redirect_stdout(out):
        results = measure(args, levels, queues, scales)
    if args.json:
        print(json.dumps({"gpu_model": gpu_model_text(args), "runs": results}, indent=2))


def measure(
    args: argparse.Namespace, levels: list[str], queues: list[str], scales: list[int]
) -> list[dict]:
    header(
        f"server busy: {args.problems} GSM8K problems (x server scale), budget {args.budget}, "
        f"policy server {args.flavour}; each server: " + gpu_model_text(args)
    )
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for scale in scales:
            scaled = argparse.Namespace(**{**vars(args), "max_running": args.max_running * scale})
            flags = gpu_model_flags(scaled)
            replayed: dict | None = None
            for queue in queues:
                tag = f"{scale}x server ({scaled.max_running} running sequences, {queue} queue)"
                first = scale == scales[0] and queue == queues[0]
                with (
                    start_simulator(
                        *flags, "--flavour", args.flavour, *QUEUES[queue], role="policy"
                    ) as policy,
                    start_simulator(*flags, role="reward") as reward,
                ):
                    for concurrency in levels if first else levels[:1]:
                        db = Path(tmp) / f"{scale}x-{queue}-c{concurrency}.db"
                        problems = args.problems * scale
                        row = run_level(db, policy, reward, concurrency, problems, args, tag)
                        if replayed is None:  # the trees are the same in every run
                            replayed = replay(db, args, scaled.max_running, row["problems_at_once"])
                        results.append(
                            {"server_scale": scale, "queue": queue, **row, "replay": replayed}
                        )
    first = [r for r in results if r["server_scale"] == scales[0] and r["queue"] == queues[0]]
    if len(first) > 1:
        base = first[0]
        print()
        for row in first[1:]:
            nodes = row["nodes"]
            same = "same tree" if nodes == base["nodes"] else f"DIFFERENT trees: {nodes}"
            print(
                f"--concurrency {row['concurrency']} takes "
                f"{row['wall_seconds'] / base['wall_seconds']:.2f}x the wall time of "
                f"--concurrency {base['concurrency']} ({same}; wall/ideal "
                f"{row['wall_over_ideal']:.2f} vs {base['wall_over_ideal']:.2f})"
            )
    print(f"\ngoal: wall <= {GOAL_WALL_OVER_IDEAL} x ideal at the default concurrency")
    for row in results:
        if row["concurrency"] != levels[0]:
            continue
        met = row["wall_over_ideal"] <= GOAL_WALL_OVER_IDEAL
        row["goal_met"] = met
        print(
            f"  {'PASS' if met else 'MISS'}  {row['server_scale']}x server, {row['queue']} queue, "
            f"--concurrency {row['concurrency']} ({row['problems_at_once']} at once): wall / ideal "
            f"{row['wall_over_ideal']:.3f} "
            f"({row['wall_seconds']:.1f} s vs {row['ideal_seconds']:.1f} s)"
        )
    return results


if __name__ == "__main__":
    main()
