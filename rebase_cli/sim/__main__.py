"""`python -m rebase_cli.sim`: a CPU stand-in for SGLang policy and PRM servers.

    python -m rebase_cli.sim --role policy --port 30000 --dataset gsm8k
    python -m rebase_cli.sim --role reward --port 30001 --dataset gsm8k --dataset math500

Everything it serves is synthetic: model ids start with `sim-`, and accuracy measured
against it says nothing about real models. Once listening it prints one line,
`rebase-sim <role> listening on http://HOST:PORT`, to stdout (useful with `--port 0`).

Server
  --role policy|reward|both   routes served (policy: /v1/completions; reward: /v1/score,
                              /classify, /pooling; both: all). Default policy.
  --flavour F                 the real server imitated (default vllm):
                              sglang (seed ignored: samples differ from call to call),
                              sglang-deterministic (--enable-deterministic-inference: the n
                              choices of a request share its seed), vllm (choice i gets
                              seed + i; EOS is stop_reason null), openai (`transformers
                              serve`: ignores n, no stop field, stop string left in the text).
  --host H, --port P          bind address (default 127.0.0.1:30000; port 0 = any free port).
  --dataset D                 gsm8k, math500 or a JSONL path; repeatable (default gsm8k).
  --template NAME|PATH        prompt template (default llemma-metamath).
  --seed S                    server seed: PRM noise, unseeded requests, faults (default 0).
  --policy-model-id, --reward-model-id   ids reported (must start with "sim-").
  --load-seconds T            /health answers 503 for T seconds after start (default 0).

Generation model
  --error-rate R              mean probability that one step goes wrong (default 0.2);
                              scaled per problem by a difficulty hashed from the question.
  --eos-token-id ID           matched_stop when a solution ends (default 2).
  --max-model-len N           prompts of N tokens or more get HTTP 400 (default 8192).

PRM model: score = sigmoid(signal * (+1 right / -1 wrong / 0 unknown) + N(0, noise))
  --prm-signal S              default 0.75.
  --prm-noise S               default 1.0.
  --good-token-id, --bad-token-id   /v1/score label ids (default: the template's).

Latency model (off by default). Each sequence of a request (a choice, a batch input, a scored
item) holds its own slot for base + its prefill + its decode, as SGLang and vLLM schedule them.
  --base-ms MS                fixed time per sequence.
  --prompt-token-ms MS        per uncached prompt token of the sequence (prefill).
  --output-token-ms MS        per output token of the sequence (decode).
  --max-running N             sequences served at once; more wait in FIFO order (0 = no cap).
  --enable-priority-scheduling   SGLang flavours: waiting sequences go by their request's
                              `priority` (higher first, none last), then arrival; nothing is
                              preempted (as SGLang with --disable-priority-preemption).
  --no-prefix-cache           charge every prompt token (default: repeated prefixes are free).

Fault injection (fractions of model requests; seeded)
  --fault-500 F, --fault-503 F   answer with HTTP 500 / 503.
  --fault-hang F              answer only after --hang-seconds (default 60).
  --fault-malformed F         status 200 with a truncated JSON body.
  --fault-seed S              fault RNG seed (default: --seed).

GET /sim/stats reports requests, tokens, busy and queue time, the sequences running and
waiting now, and the faults injected; POST /sim/reset zeroes them.
"""

from __future__ import annotations

import argparse
import sys

from rebase_cli.errors import RebaseError
from rebase_cli.prompts import DEFAULT_TEMPLATE
from rebase_cli.sim.config import ROLES, FaultConfig, LatencyConfig, SimConfig
from rebase_cli.sim.flavours import DEFAULT_FLAVOUR, FLAVOURS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m rebase_cli.sim",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--role", choices=ROLES, default="policy")
    add("--flavour", choices=tuple(FLAVOURS), default=DEFAULT_FLAVOUR)
    add("--host", default="127.0.0.1")
    add("--port", type=int, default=30000)
    add("--dataset", action="append", dest="datasets", metavar="D")
    add("--template", default=DEFAULT_TEMPLATE)
    add("--seed", type=int, default=0)
    add("--policy-model-id", default="sim-policy")
    add("--reward-model-id", default="sim-prm")
    add("--load-seconds", type=float, default=0.0)
    add("--score-extraction", action="store_true", help="serve /v1/score's setwise readout")
    add("--error-rate", type=float, default=SimConfig.error_rate)
    add("--eos-token-id", type=int, default=2)
    add("--max-model-len", type=int, default=8192)
    add("--prm-signal", type=float, default=SimConfig.prm_signal)
    add("--prm-noise", type=float, default=1.0)
    add("--good-token-id", type=int, default=None)
    add("--bad-token-id", type=int, default=None)
    add("--base-ms", type=float, default=0.0)
    add("--prompt-token-ms", type=float, default=0.0)
    add("--output-token-ms", type=float, default=0.0)
    add("--max-running", type=int, default=0)
    add("--no-prefix-cache", action="store_true")
    add("--enable-priority-scheduling", action="store_true")
    add("--fault-500", type=float, default=0.0)
    add("--fault-503", type=float, default=0.0)
    add("--fault-hang", type=float, default=0.0)
    add("--hang-seconds", type=float, default=60.0)
    add("--fault-malformed", type=float, default=0.0)
    add("--fault-seed", type=int, default=None)
    return parser


def config_from_args(args: argparse.Namespace) -> SimConfig:
    return SimConfig(
        role=args.role,
        flavour=args.flavour,
        host=args.host,
        port=args.port,
        datasets=tuple(args.datasets or ("gsm8k",)),
        template=args.template,
        seed=args.seed,
        policy_model=args.policy_model_id,
        reward_model=args.reward_model_id,
        load_seconds=args.load_seconds,
        score_extraction=args.score_extraction,
        error_rate=args.error_rate,
        eos_token_id=args.eos_token_id,
        max_model_len=args.max_model_len,
        prm_signal=args.prm_signal,
        prm_noise=args.prm_noise,
        good_token_id=args.good_token_id,
        bad_token_id=args.bad_token_id,
        latency=LatencyConfig(
            base_ms=args.base_ms,
            prompt_token_ms=args.prompt_token_ms,
            output_token_ms=args.output_token_ms,
            max_running=args.max_running,
            prefix_cache=not args.no_prefix_cache,
            priority_scheduling=args.enable_priority_scheduling,
        ),
        faults=FaultConfig(
            http_500=args.fault_500,
            http_503=args.fault_503,
            hang=args.fault_hang,
            hang_seconds=args.hang_seconds,
            malformed=args.fault_malformed,
            seed=args.fault_seed,
        ),
    ).validate()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        import uvicorn

        from rebase_cli.sim.app import create_app
        from rebase_cli.sim.inprocess import bind_socket, uvicorn_config

        config = config_from_args(args)
        sock = bind_socket(config.host, config.port)  # a busy port fails before slow loading
        try:
            app = create_app(config)
        except BaseException:
            sock.close()
            raise
    except RebaseError as exc:
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"rebase-sim {config.role} listening on http://{shown}:{port}", flush=True)
    uvicorn.Server(uvicorn_config(app)).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
