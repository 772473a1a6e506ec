"""The simulator's ASGI app: SGLang's routes (and vLLM's /pooling) over the simulated models.

Routes: GET /health, GET /v1/models, GET /model_info, POST /v1/completions, POST /v1/score,
POST /classify, POST /pooling, GET /sim/stats, POST /sim/reset. A `policy` server answers 404
on the reward routes and a `reward` server on /v1/completions; `both` serves everything.
The app never lets an exception escape a model route: a bug becomes a JSON 500, so fault and
load tests always find the server alive afterwards.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from rebase_cli.datasets import load_dataset
from rebase_cli.domain import Problem
from rebase_cli.prompts import load_template
from rebase_cli.sim.bank import Bank
from rebase_cli.sim.config import SimConfig
from rebase_cli.sim.faults import Fault, FaultInjector
from rebase_cli.sim.perf import PerfModel
from rebase_cli.sim.policy import PolicyModel
from rebase_cli.sim.prm import PrmModel
from rebase_cli.sim.protocol import (
    BadRequest,
    dumps,
    parse_body,
    parse_classify,
    parse_completion,
    parse_pooling,
    parse_score,
    sglang_error,
    vllm_error,
)
from rebase_cli.sim.tokenizer import count_tokens

logger = logging.getLogger("rebase_cli.sim")
JSON = "application/json"
Handler = Callable[[dict[str, Any]], Awaitable[Any]]


def load_problems(specs: Sequence[str]) -> list[Problem]:
    """The problems of every dataset spec (name or JSONL path), in order."""
    problems: list[Problem] = []
    for spec in specs:
        problems.extend(load_dataset(spec).problems)
    return problems


class Simulator:
    """Everything one server knows: the models, the cost model, faults and counters."""

    def __init__(self, config: SimConfig, problems: Sequence[Problem] | None = None) -> None:
        self.config = config.validate()
        self.template = load_template(config.template)
        prm_format = self.template.prm
        forbidden = (*self.template.stop, prm_format.step_tag.strip(), prm_format.pooling_step_tag)
        if problems is None:
            problems = load_problems(config.datasets)
        self.bank = Bank(problems, forbidden)
        self.policy = PolicyModel(self.bank, self.template, config)
        self.prm = PrmModel(self.bank, self.template, config)
        self.good_token_id = (
            config.good_token_id if config.good_token_id is not None else prm_format.good_token_id
        )
        self.bad_token_id = (
            config.bad_token_id if config.bad_token_id is not None else prm_format.bad_token_id
        )
        self.perf = PerfModel(config.latency)
        self.faults = FaultInjector(config.faults, config.fault_seed)
        self.rng = random.Random(config.seed)
        self.started = time.monotonic()
        self.bad_requests = 0
        self.internal_errors = 0
        self._ids = itertools.count(1)

    def next_id(self, prefix: str) -> str:
        return f"{prefix}-sim{next(self._ids):x}"

    def reset(self) -> None:
        self.perf.reset()
        self.faults.reset()
        self.rng = random.Random(self.config.seed)
        self.bad_requests = self.internal_errors = 0

    # -- model routes -----------------------------------------------------------------------

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        params = parse_completion(body)
        seed = params.seed if params.seed is not None else self.rng.getrandbits(63)
        limit = self.config.max_model_len
        choices: list[dict[str, Any]] = []
        prompt_tokens = completion_tokens = longest = 0
        for prompt in params.prompts:
            tokens = count_tokens(prompt)
            if tokens >= limit:
                raise BadRequest(
                    f"The input ({tokens} tokens) is longer than the model's context length "
                    f"({limit} tokens)."
                )
            prompt_tokens += tokens
            for choice in self.policy.complete(
                prompt,
                n=params.n,
                max_tokens=params.max_tokens,
                stop=params.stop,
                temperature=params.temperature,
                top_p=params.top_p,
                seed=seed,
            ):
                completion_tokens += choice.completion_tokens
                longest = max(longest, choice.completion_tokens)
                choices.append(
                    {
                        "index": len(choices),
                        "text": choice.text,
                        "logprobs": None,
                        "finish_reason": choice.finish_reason,
                        "matched_stop": choice.matched_stop,
                    }
                )
        await self.perf.serve(
            params.prompts,
            prompt_tokens,
            completion_tokens=completion_tokens,
            longest_output=longest,
            slots=len(choices),
        )
        return {
            "id": self.next_id("cmpl"),
            "object": "text_completion",
            "created": int(time.time()),
            "model": self.config.policy_model,
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    async def score(self, body: dict[str, Any]) -> dict[str, Any]:
        params = parse_score(body)
        scores = []
        for item in params.items:
            text = item + params.query if params.item_first else params.query + item
            scores.append(
                self.prm.label_probs(
                    text,
                    params.label_token_ids,
                    self.good_token_id,
                    self.bad_token_id,
                    params.apply_softmax,
                )
            )
        tokens = count_tokens(params.query) + sum(count_tokens(item) for item in params.items)
        await self.perf.serve([params.query], tokens, slots=len(params.items))
        return {
            "scores": scores,
            "model": self.config.reward_model,
            "usage": {"prompt_tokens": tokens, "completion_tokens": 0, "total_tokens": tokens},
            "object": "scoring",
        }

    async def classify(self, body: dict[str, Any]) -> Any:
        texts, single = parse_classify(body)
        outputs, total = [], 0
        for text in texts:
            tokens = count_tokens(text)
            total += tokens
            outputs.append(
                {
                    "embedding": [self.prm.last_logit(text)],
                    "meta_info": {
                        "id": self.next_id("classify"),
                        "prompt_tokens": tokens,
                        "model": self.config.reward_model,
                    },
                }
            )
        await self.perf.serve(texts, total, slots=len(texts))
        return outputs[0] if single else outputs  # SGLang answers one text with one object

    async def pool(self, body: dict[str, Any]) -> dict[str, Any]:
        texts = parse_pooling(body)
        data, total = [], 0
        for index, text in enumerate(texts):
            total += count_tokens(text)
            data.append({"index": index, "object": "pooling", "data": self.prm.pooling_rows(text)})
        await self.perf.serve(texts, total, slots=len(texts))
        return {
            "id": self.next_id("pool"),
            "object": "list",
            "created": int(time.time()),
            "model": self.config.reward_model,
            "data": data,
            "usage": {"prompt_tokens": total, "completion_tokens": 0, "total_tokens": total},
        }

    # -- information ------------------------------------------------------------------------

    def models(self) -> list[str]:
        served = []
        if self.config.serves_policy:
            served.append(self.config.policy_model)
        if self.config.serves_reward:
            served.append(self.config.reward_model)
        return served

    def stats(self) -> dict[str, Any]:
        return {
            "simulated": True,
            "role": self.config.role,
            "models": self.models(),
            "problems": len(self.bank),
            "template": self.template.name,
            "seed": self.config.seed,
            **self.perf.snapshot(),
            "bad_requests": self.bad_requests,
            "internal_errors": self.internal_errors,
            "faults": dict(self.faults.injected),
        }


def _json(payload: Any, status: int = 200) -> Response:
    return Response(dumps(payload), status_code=status, media_type=JSON)


def create_app(config: SimConfig, *, problems: Sequence[Problem] | None = None) -> Starlette:
    """The ASGI app of one simulator server. Datasets are loaded here (once), unless
    `problems` is given (tests and in-process use)."""
    sim = Simulator(config, problems)

    def model_route(
        route: str, handler: Handler, serves: bool, role_hint: str, vllm: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        error = vllm_error if vllm else sglang_error

        async def endpoint(request: Request) -> Response:
            sim.perf.count_request(route)
            if not serves:
                message = f"this simulator serves the {sim.config.role} role; {route} {role_hint}"
                return Response(error(message, 404, "NotFoundError"), 404, media_type=JSON)
            data = await request.body()
            fault = sim.faults.draw()
            if fault is Fault.HTTP_500:
                body = error("simulated fault: internal server error", 500, "InternalServerError")
                return Response(body, 500, media_type=JSON)
            if fault is Fault.HTTP_503:
                body = error("simulated fault: service unavailable", 503, "ServiceUnavailable")
                return Response(body, 503, media_type=JSON)
            if fault is Fault.HANG:
                await asyncio.sleep(sim.config.faults.hang_seconds)
            try:
                payload = await handler(parse_body(data))
            except BadRequest as exc:
                sim.bad_requests += 1
                return Response(error(exc.message), 400, media_type=JSON)
            except Exception as exc:  # a bug must not take the server down
                sim.internal_errors += 1
                logger.exception("simulator error on %s", route)
                message = f"simulator error: {type(exc).__name__}: {exc}"
                return Response(error(message, 500, "InternalServerError"), 500, media_type=JSON)
            content = dumps(payload)
            if fault is Fault.MALFORMED:
                content = content[: max(1, len(content) // 2)]  # cut mid-JSON
            return Response(content, media_type=JSON)

        return endpoint

    async def health(request: Request) -> Response:
        if time.monotonic() - sim.started < sim.config.load_seconds:
            return _json({"status": "loading"}, 503)
        return Response(b"", media_type=JSON)

    async def models(request: Request) -> Response:
        created = int(time.time())
        data = [
            {
                "id": model,
                "object": "model",
                "created": created,
                "owned_by": "rebase-sim",
                "root": model,
                "max_model_len": sim.config.max_model_len,
            }
            for model in sim.models()
        ]
        return _json({"object": "list", "data": data})

    async def model_info(request: Request) -> Response:
        return _json(
            {
                "model_path": sim.models()[0],
                "tokenizer_path": sim.models()[0],
                "is_generation": sim.config.serves_policy,
                "simulated": True,
                "role": sim.config.role,
                "models": sim.models(),
                "template": sim.template.name,
                "datasets": list(sim.config.datasets),
                "eos_token_id": sim.config.eos_token_id,
                "label_token_ids": [sim.good_token_id, sim.bad_token_id],
            }
        )

    async def server_info(request: Request) -> Response:
        # What SGLang's /server_info (formerly /get_server_info) reports of its arguments; the
        # SGLang router reads served_model_name (else model_path) from it to route by model.
        model = sim.models()[0]
        return _json(
            {
                "model_path": model,
                "served_model_name": model,
                "tokenizer_path": model,
                "tp_size": 1,
                "dp_size": 1,
                "host": sim.config.host,
                "port": sim.config.port,
                "is_embedding": not sim.config.serves_policy,
                "simulated": True,
            }
        )

    async def stats(request: Request) -> Response:
        return _json(sim.stats())

    async def reset(request: Request) -> Response:
        sim.reset()
        return _json({"reset": True})

    policy_hint = "needs a server started with --role policy (or both)"
    reward_hint = "needs a server started with --role reward (or both)"
    cfg = sim.config
    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/model_info", model_info, methods=["GET"]),
        Route("/server_info", server_info, methods=["GET"]),
        Route("/get_server_info", server_info, methods=["GET"]),
        Route(
            "/v1/completions",
            model_route("/v1/completions", sim.complete, cfg.serves_policy, policy_hint),
            methods=["POST"],
        ),
        Route(
            "/v1/score",
            model_route("/v1/score", sim.score, cfg.serves_reward, reward_hint),
            methods=["POST"],
        ),
        Route(
            "/classify",
            model_route("/classify", sim.classify, cfg.serves_reward, reward_hint),
            methods=["POST", "PUT"],
        ),
        Route(
            "/pooling",
            model_route("/pooling", sim.pool, cfg.serves_reward, reward_hint, vllm=True),
            methods=["POST"],
        ),
        Route("/sim/stats", stats, methods=["GET"]),
        Route("/sim/reset", reset, methods=["POST"]),
    ]
    app = Starlette(routes=routes)
    app.state.sim = sim
    return app
