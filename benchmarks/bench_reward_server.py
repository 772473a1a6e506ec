"""Scoring a sibling group with the transformers reward model: the shared query prefix run once
and its cache repeated for the items, against one padded batch of whole sequences, and against
one forward pass per item (the baseline).

    python benchmarks/bench_reward_server.py [--items 4] [--repeats 5] [--model DIR]

The workload is what `rebase search` sends with template smollm2-judge: the query of a GSM8K
question with two earlier steps (about 150 tokens) and `--items` candidate steps (about 15
tokens each). Default model: SmolLM2-135M-Instruct as `rebase models prepare smollm2` builds it
(float32, as the server loads it). The three ways must give the same scores; the script checks
that before it reports times.
"""

from __future__ import annotations

import argparse
import statistics
import time

from _common import header

from rebase_cli.clients import prm_text
from rebase_cli.datasets import load_dataset
from rebase_cli.models import MODELS
from rebase_cli.models.prepare import model_dir
from rebase_cli.prompts import load_template
from rebase_cli.serving import reward_model
from rebase_cli.serving.reward_model import RewardModel

STEPS = [
    "She sells 16 - 3 - 4 = 9 eggs.",
    "She makes 9 * 2 = 18 dollars.",
    "The answer is 18.",
    "She makes 9 * 3 = 27 dollars.",
    "So she eats 3 + 4 = 7 eggs a day.",
    "The answer is 27.",
    "She has 16 eggs in total.",
    "The answer is 9.",
]


def timed(label: str, function, repeats: int) -> tuple[float, list]:
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
    median = statistics.median(times)
    print(f"{label:<44} median {median * 1000:8.1f} ms over {repeats}")
    return median, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model", default=None, help="Default: the prepared smollm2 folder.")
    args = parser.parse_args()
    header("reward model: shared-prefix scoring vs a padded batch vs one pass per item")

    import torch

    path = args.model or str(model_dir(MODELS["smollm2"]))
    model = RewardModel.load(path)
    print(f"model {path}, {torch.get_num_threads()} torch threads")
    template = load_template("smollm2-judge")
    problem = load_dataset("gsm8k").problems[0]
    query = prm_text.score_query(problem.question, STEPS[:2], template.prm)
    items = [prm_text.score_item(s, template.prm) for s in (STEPS * 4)[: args.items]]
    labels = [template.prm.good_token_id, template.prm.bad_token_id]
    print(f"query {len(model.encode(query))} tokens, {len(items)} items")

    def score():
        return model.score(query, items, labels, apply_softmax=True).scores

    def per_item():
        return [model.score(query, [i], labels, apply_softmax=True).scores[0] for i in items]

    score()  # warm up
    shared, reused = timed("shared prefix once, items batched", score, args.repeats)
    threshold = reward_model.MIN_SHARED_PREFIX
    reward_model.MIN_SHARED_PREFIX = 10**9  # the padded whole-sequence batch
    try:
        padded, batch = timed("whole sequences, one padded batch", score, args.repeats)
    finally:
        reward_model.MIN_SHARED_PREFIX = threshold
    alone, singles = timed("one forward pass per item (baseline)", per_item, args.repeats)
    for a, b, c in zip(reused, batch, singles, strict=True):
        assert max(abs(x - y) for x, y in zip(a, c, strict=True)) < 1e-4, (a, c)
        assert max(abs(x - y) for x, y in zip(b, c, strict=True)) < 1e-4, (b, c)
    print(f"per-item / shared prefix: {alone / shared:.2f}x; per-item / padded batch: "
          f"{alone / padded:.2f}x; padded / shared: {padded / shared:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
