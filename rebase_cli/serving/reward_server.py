"""`python -m rebase_cli.serving.reward_server`: the process `rebase serve reward --engine
transformers` starts. It loads the model first and only then listens, so GET /health answers
200 exactly when the first request can be computed (before that the port refuses connections,
which `rebase serve` reads as "still loading").
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from rebase_cli.serving.reward_model import DTYPES, HEADS


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m rebase_cli.serving.reward_server",
        description="SGLang's /v1/score, /classify and /tokenize over a transformers model.",
    )
    parser.add_argument("--model", required=True, help="Hugging Face id or local folder.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=30001)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto.")
    parser.add_argument(
        "--dtype", choices=DTYPES, default="float32", help="Weights' dtype (auto: checkpoint's)."
    )
    parser.add_argument(
        "--head", choices=HEADS, default=None, help="Default: from the checkpoint's config."
    )
    parser.add_argument("--served-model-name", default=None, help="Default: --model.")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    log = logging.getLogger("rebase.reward_server")

    import torch
    import transformers
    import uvicorn

    from rebase_cli.serving.reward_app import create_app
    from rebase_cli.serving.reward_model import RewardModel

    log.info("loading %s on %s (%s)", args.model, args.device, args.dtype)
    try:
        reward = RewardModel.load(args.model, device=args.device, dtype=args.dtype, head=args.head)
    except (OSError, ValueError) as exc:
        print(f"error: cannot load {args.model}: {exc}", file=sys.stderr)
        return 1
    log.info("loaded: %s head, vocabulary %d, %d torch threads", reward.head,
             reward.vocab_size, torch.get_num_threads())  # fmt: skip
    info = {
        "device": reward.device,
        "dtype": str(next(reward.model.parameters()).dtype).removeprefix("torch."),
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
    }
    app = create_app(reward, model_id=args.served_model_name or args.model, info=info)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
