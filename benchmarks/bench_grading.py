"""Throughput of answer grading: distinct (answer, reference) pairs per second.

    REBASE_DATA_DIR=../shared/data python benchmarks/bench_grading.py [--report-size 100000]

Workloads (each in a fresh process state for its grader caches, cold sympy caches included):
- gsm8k: every GSM8K reference against a right, a reformatted ("$1,234.00") and a wrong answer;
- math500: every MATH500 solution's final box against its answer, plus a wrong answer (another
  problem's reference), in the main thread (SIGALRM deadline) and from a worker thread (worker
  processes);
- report: a report-sized batch (`--report-size` answers, mostly repeats, as in a search tree
  where many paths reach the same answer) through `grade_many`, which grades each distinct
  pair once.
"""

from __future__ import annotations

import argparse
import random
import time
from concurrent.futures import ThreadPoolExecutor

from rebase_cli.datasets import load_dataset
from rebase_cli.grading import extract_answer, grade_many, shutdown_workers


def timed(label: str, pairs: list[tuple[str | None, str]], dataset: str, *, thread: bool) -> None:
    started = time.perf_counter()
    if thread:
        with ThreadPoolExecutor(max_workers=1) as executor:
            verdicts = executor.submit(grade_many, pairs, dataset).result()
    else:
        verdicts = grade_many(pairs, dataset)
    elapsed = time.perf_counter() - started
    distinct = len(set(pairs))
    correct = sum(v.correct for v in verdicts)
    methods: dict[str, int] = {}
    for verdict in verdicts:
        methods[verdict.method] = methods.get(verdict.method, 0) + 1
    print(
        f"{label:<34} {len(pairs):>7,} pairs {distinct:>6,} distinct  {elapsed:7.2f}s  "
        f"{distinct / elapsed:8,.0f} distinct/s  {len(pairs) / elapsed:9,.0f} pairs/s  "
        f"correct {correct / len(pairs):6.1%}  by {dict(sorted(methods.items()))}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report-size", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    gsm8k = load_dataset("gsm8k").problems
    gsm_pairs: list[tuple[str | None, str]] = []
    for problem in gsm8k:
        reference = problem.reference_answer
        value = float(reference)
        gsm_pairs += [
            (reference, reference),
            (f"${value:,.2f}", reference),
            (str(int(value) + 1), reference),
        ]
    timed("gsm8k (numeric)", gsm_pairs, "gsm8k", thread=False)

    math500 = load_dataset("math500").problems
    own = [(extract_answer(p.solution), p.reference_answer) for p in math500]
    others = [math500[(i + 7) % len(math500)].reference_answer for i in range(len(math500))]
    wrong = [(o, p.reference_answer) for o, p in zip(others, math500, strict=True)]
    timed("math500 solutions, main thread", own + wrong, "math500", thread=False)
    # Distinct strings so that the worker processes' caches start cold too.
    own_spaced = [(f" {a} ", r) for a, r in own]
    wrong_spaced = [(f" {a} ", r) for a, r in wrong]
    timed("math500 solutions, worker thread", own_spaced + wrong_spaced, "math500", thread=True)

    # A report: per problem a handful of distinct final answers, each reached by many paths.
    report: list[tuple[str | None, str]] = []
    while len(report) < args.report_size:
        index = rng.randrange(len(math500))
        problem = math500[index]
        choices = [own[index][0], others[index], None, f"{rng.randrange(100)}"]
        report.append((rng.choice(choices), problem.reference_answer))
    timed("math500 report batch, main thread", report, "math500", thread=False)
    shutdown_workers()


if __name__ == "__main__":
    main()
