"""A grading worker process: `python -m rebase_cli.grading.worker`.

Protocol (see `safe`): the worker writes one line `"ready"` once sympy is imported, then answers
each request line `{"pairs": [[answer, reference], ...], "timeout_s": t}` with one line holding
a list of verdicts (as dicts), in order. It grades in its own main thread, so every pair is
bounded by the SIGALRM deadline. It exits when its stdin closes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys


def main() -> None:
    # Replies go to the original stdout; anything a library prints goes to stderr instead, so
    # that it can never corrupt the protocol.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())

    from rebase_cli.grading.equivalence import grade_chunk, preload

    preload()
    replies.write(json.dumps("ready") + "\n")
    replies.flush()
    for line in sys.stdin:
        request = json.loads(line)
        pairs = [(answer, reference) for answer, reference in request["pairs"]]
        verdicts = grade_chunk(pairs, float(request["timeout_s"]))
        replies.write(json.dumps([dataclasses.asdict(v) for v in verdicts]) + "\n")
        replies.flush()


if __name__ == "__main__":
    main()
