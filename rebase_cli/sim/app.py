"""The simulator's ASGI app: a real server's routes over the simulated models.

Routes on every flavour: GET /health, GET /v1/models, GET /model_info, POST /v1/completions,
the reward routes (SGLang's POST /v1/score and /classify, vLLM's POST /pooling: each speaks
the protocol of the server that has it, so one simulator can stand in for a policy server of
one kind and a reward server of another), GET /sim/stats, POST /sim/reset. The flavour
(`sim.flavours`) adds its server's own routes: SGLang's GET /server_info, GET /ready and
POST /generate, vLLM's GET /version; and it decides how samples are seeded and stops reported.
A `policy` server answers 404 on the reward routes and a `reward` server on the generation
routes; `both` serves everything.
The app never lets an exception escape a model route: a bug becomes a JSON 500, so fault and
load tests always find the server alive afterwards.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from rebase_cli.datasets import load_dataset
from rebase_cli.domain import Problem
from rebase_cli.prompts import load_template
from rebase_cli.sim.bank import Bank
from rebase_cli.sim.config import SimConfig
from rebase_cli.sim.faults import Fault, FaultInjector
from rebase_cli.sim.flavours import SGLANG_VERSION, VLLM_VERSION, choice_seeds
from rebase_cli.sim.perf import PerfModel, SequenceWork
from rebase_cli.sim.policy import Choice, PolicyModel, prompt_digest
from rebase_cli.sim.prm import PrmModel
from rebase_cli.sim.protocol import (
    BadRequest,
    ScoreParams,
    dumps,
    parse_body,
    parse_classify,
    parse_completion,
    parse_generate,
    parse_pooling,
    parse_priority,
    parse_score,
    sglang_error,
    vllm_error,
)
from rebase_cli.sim.tokenizer import count_tokens

logger = logging.getLogger("rebase_cli.sim")
JSON = "application/json"
# Samples remembered to count repeats (`duplicate_samples`); the memory is cleared when full.
SAMPLE_MEMORY = 500_000
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
        self.duplicate_samples = 0
        self._samples: set[tuple[int, int, float, float]] = set()
        self._ids = itertools.count(1)

    def next_id(self, prefix: str) -> str:
        return f"{prefix}-sim{next(self._ids):x}"

    def reset(self) -> None:
        self.perf.reset()
        self.faults.reset()
        self.rng = random.Random(self.config.seed)
        self.bad_requests = self.internal_errors = self.duplicate_samples = 0
        self._samples.clear()

    def _draw_seed(self) -> int:
        return self.rng.getrandbits(63)

    def _sample(
        self,
        prompt: str,
        seeds: list[int],
        *,
        max_tokens: int,
        stop: tuple[str, ...],
        temperature: float,
        top_p: float,
    ) -> list[Choice]:
        """The choices for one prompt, one per seed; counts samples drawn again with a seed
        already used for this prompt (what collapses a search tree)."""
        if temperature > 0:
            for seed in seeds:
                key = (prompt_digest(prompt), seed, temperature, top_p)
                if key in self._samples:
                    self.duplicate_samples += 1
                elif len(self._samples) >= SAMPLE_MEMORY:
                    self._samples.clear()
                self._samples.add(key)
        return self.policy.complete(
            prompt,
            seeds=seeds,
            max_tokens=max_tokens,
            stop=stop,
            temperature=temperature,
            top_p=top_p,
        )

    def _check_length(self, prompt: str) -> int:
        tokens = count_tokens(prompt)
        limit = self.config.max_model_len
        if tokens >= limit:
            raise BadRequest(
                f"The input ({tokens} tokens) is longer than the model's context length "
                f"({limit} tokens)."
            )
        return tokens

    def _openai_choice(self, index: int, choice: Choice, token_ids: bool) -> dict[str, Any]:
        """One /v1/completions choice as the flavour's server reports it."""
        server = self.config.server
        text = choice.text
        out: dict[str, Any] = {"index": index, "text": text, "logprobs": None}
        out["finish_reason"] = choice.finish_reason
        if server.stop_field == "matched_stop":
            out["matched_stop"] = choice.matched_stop
        elif server.stop_field == "stop_reason":
            # vLLM: the stop string, or null when the model emitted EOS (or ran out of length).
            matched = choice.matched_stop
            out["stop_reason"] = matched if isinstance(matched, str) else None
        if server.stop_string_in_text and isinstance(choice.matched_stop, str):
            out["text"] = text + choice.matched_stop
        if token_ids and server.returns_token_ids:
            out["token_ids"] = list(choice.token_ids)
        return out

    # -- model routes -----------------------------------------------------------------------

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        params, priority = parse_completion(body), parse_priority(body)
        server = self.config.server
        n = params.n if server.honours_n else 1
        choices: list[dict[str, Any]] = []
        sequences: list[SequenceWork] = []
        prompt_tokens = completion_tokens = 0
        for prompt in params.prompts:
            tokens = self._check_length(prompt)
            prompt_tokens += tokens
            seeds = choice_seeds(server, params.seed, n, self._draw_seed)
            sampled = self._sample(
                prompt,
                seeds,
                max_tokens=params.max_tokens,
                stop=params.stop,
                temperature=params.temperature,
                top_p=params.top_p,
            )
            for choice in sampled:
                completion_tokens += choice.completion_tokens
                sequences.append(SequenceWork(prompt, tokens, choice.completion_tokens))
                choices.append(self._openai_choice(len(choices), choice, params.return_token_ids))
        await self.perf.serve(sequences, priority)
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

    async def generate(self, body: dict[str, Any]) -> Any:
        """SGLang's native POST /generate: one output per input text, each with its own
        sampling parameters (`sampling_seed` applied only by a deterministic server)."""
        items, single = parse_generate(body)
        priority = parse_priority(body)
        server = self.config.server
        outputs: list[dict[str, Any]] = []
        sequences: list[SequenceWork] = []
        for item in items:
            tokens = self._check_length(item.text)
            [seed] = choice_seeds(server, item.sampling_seed, 1, self._draw_seed)
            [choice] = self._sample(
                item.text,
                [seed],
                max_tokens=max(1, item.max_new_tokens),
                stop=item.stop,
                temperature=item.temperature,
                top_p=item.top_p,
            )
            sequences.append(SequenceWork(item.text, tokens, choice.completion_tokens))
            if choice.finish_reason == "length":
                finish: dict[str, Any] = {"type": "length", "length": choice.completion_tokens}
            else:
                finish = {"type": "stop", "matched": choice.matched_stop}
            outputs.append(
                {
                    "text": choice.text,
                    "output_ids": list(choice.token_ids),
                    "meta_info": {
                        "id": self.next_id("gen"),
                        "finish_reason": finish,
                        "prompt_tokens": tokens,
                        "completion_tokens": choice.completion_tokens,
                        "cached_tokens": 0,
                    },
                }
            )
        await self.perf.serve(sequences, priority)
        return outputs[0] if single else outputs

    async def score(self, body: dict[str, Any]) -> dict[str, Any]:
        params = parse_score(body)
        # SGLang scores query + item as one prompt per item (text concatenated before
        # tokenising) and sums the prompts' tokens.
        prompts = [
            item + params.query if params.item_first else params.query + item
            for item in params.items
        ]
        scores: list[Any] = []
        if params.extraction_token is not None:
            scores = self.setwise_scores(params)
        for text in prompts if params.extraction_token is None else ():
            scores.append(
                self.prm.label_probs(
                    text,
                    params.label_token_ids,
                    self.good_token_id,
                    self.bad_token_id,
                    params.apply_softmax,
                )
            )
        sequences = [SequenceWork(prompt, count_tokens(prompt)) for prompt in prompts]
        tokens = sum(sequence.prompt_tokens for sequence in sequences)
        await self.perf.serve(sequences)
        return {
            "scores": scores,
            "model": self.config.reward_model,
            "usage": {"prompt_tokens": tokens, "completion_tokens": 0, "total_tokens": tokens},
            "object": "scoring",
        }

    def setwise_scores(self, params: ScoreParams) -> list[list[list[float]]]:
        """SGLang's setwise readout: one label row at every occurrence of the extraction token
        in each query + item, refused (400) as SGLang refuses it (see SimConfig)."""
        if not self.config.score_extraction:
            raise BadRequest(
                "score_extraction_token_id requires --disable-radix-cache because pooling "
                "positions are relative to the full prompt."
            )
        token = params.extraction_token or ""
        if token != self.template.prm.step_tag.strip():
            raise BadRequest(
                f"score_extraction_token {token!r} did not resolve to a dedicated token id."
            )
        if params.item_first:
            raise BadRequest("item_first is not supported with score_extraction_token_id.")
        if token in params.query:
            raise BadRequest(
                "score-extraction token found in the shared query prefix; it must appear only "
                "within items, one per candidate."
            )
        out = []
        for item in params.items:
            text = params.query + item
            if token not in item:
                raise BadRequest(
                    "No score-extraction token found in one or more input(s); the client must "
                    "render one per candidate."
                )
            # Causal attention: the row at a tag sees exactly the text up to that tag.
            ends = [m.end() for m in re.finditer(re.escape(token), text)]
            out.append(
                [
                    self.prm.label_probs(
                        text[:end],
                        params.label_token_ids,
                        self.good_token_id,
                        self.bad_token_id,
                        params.apply_softmax,
                    )
                    for end in ends
                ]
            )
        return out

    async def classify(self, body: dict[str, Any]) -> Any:
        texts, single = parse_classify(body)
        outputs, sequences = [], []
        for text in texts:
            tokens = count_tokens(text)
            sequences.append(SequenceWork(text, tokens))
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
        await self.perf.serve(sequences)
        return outputs[0] if single else outputs  # SGLang answers one text with one object

    async def pool(self, body: dict[str, Any]) -> dict[str, Any]:
        texts = parse_pooling(body)
        data, sequences = [], []
        for index, text in enumerate(texts):
            sequences.append(SequenceWork(text, count_tokens(text)))
            data.append({"index": index, "object": "pooling", "data": self.prm.pooling_rows(text)})
        await self.perf.serve(sequences)
        total = sum(sequence.prompt_tokens for sequence in sequences)
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
            "flavour": self.config.flavour,
            "models": self.models(),
            "problems": len(self.bank),
            "template": self.template.name,
            "seed": self.config.seed,
            **self.perf.snapshot(),
            "bad_requests": self.bad_requests,
            "internal_errors": self.internal_errors,
            "duplicate_samples": self.duplicate_samples,
            "faults": dict(self.faults.injected),
        }


# A model route's work: given how to read the request body, (status, JSON body).
Responder = Callable[[Callable[[], Awaitable[bytes]]], Awaitable[tuple[int, bytes]]]


class SimApp(Starlette):
    """The Starlette app, with POSTs to the model routes answered directly at the ASGI level.

    Those are nearly every request a search makes; Starlette's middleware, routing and
    request objects cost the simulator about as much CPU as the simulated models themselves,
    and the simulator shares the machine with the client it serves. The direct path answers
    exactly what the Starlette route answers (the same body bytes, status, content-type and
    content-length); everything else, and other methods on those paths, go to Starlette."""

    def __init__(self, fast_posts: dict[str, Responder], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fast_posts = fast_posts

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        respond = (
            self.fast_posts.get(scope["path"])
            if scope["type"] == "http" and scope["method"] == "POST"
            else None
        )
        if respond is None:
            await super().__call__(scope, receive, send)
            return

        async def read_body() -> bytes:
            chunks = []
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ClientDisconnect  # as Request.body() does
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    return b"".join(chunks)

        try:
            status, content = await respond(read_body)
        except ClientDisconnect:
            return  # nobody left to answer
        headers = [
            (b"content-length", str(len(content)).encode()),
            (b"content-type", JSON.encode()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})


def _json(payload: Any, status: int = 200) -> Response:
    return Response(dumps(payload), status_code=status, media_type=JSON)


def create_app(config: SimConfig, *, problems: Sequence[Problem] | None = None) -> Starlette:
    """The ASGI app of one simulator server. Datasets are loaded here (once), unless
    `problems` is given (tests and in-process use)."""
    sim = Simulator(config, problems)
    fast_posts: dict[str, Responder] = {}  # filled by model_route

    def model_route(
        route: str, handler: Handler, serves: bool, role_hint: str, vllm: bool = False
    ) -> Responder:
        error = vllm_error if vllm else sglang_error

        async def respond(read_body: Callable[[], Awaitable[bytes]]) -> tuple[int, bytes]:
            sim.perf.count_request(route)
            if not serves:
                message = f"this simulator serves the {sim.config.role} role; {route} {role_hint}"
                return 404, error(message, 404, "NotFoundError")
            data = await read_body()
            fault = sim.faults.draw()
            if fault is Fault.HTTP_500:
                return 500, error(
                    "simulated fault: internal server error", 500, "InternalServerError"
                )
            if fault is Fault.HTTP_503:
                return 503, error("simulated fault: service unavailable", 503, "ServiceUnavailable")
            if fault is Fault.HANG:
                await asyncio.sleep(sim.config.faults.hang_seconds)
            try:
                payload = await handler(parse_body(data))
            except BadRequest as exc:
                sim.bad_requests += 1
                return 400, error(exc.message)
            except Exception as exc:  # a bug must not take the server down
                sim.internal_errors += 1
                logger.exception("simulator error on %s", route)
                message = f"simulator error: {type(exc).__name__}: {exc}"
                return 500, error(message, 500, "InternalServerError")
            content = dumps(payload)
            if fault is Fault.MALFORMED:
                content = content[: max(1, len(content) // 2)]  # cut mid-JSON
            return 200, content

        fast_posts[route] = respond
        return respond

    def model_endpoint(respond: Responder) -> Callable[[Request], Awaitable[Response]]:
        """A model route as a Starlette endpoint (methods other than the fast POST path)."""

        async def endpoint(request: Request) -> Response:
            status, content = await respond(request.body)
            return Response(content, status, media_type=JSON)

        return endpoint

    def loading() -> bool:
        return time.monotonic() - sim.started < sim.config.load_seconds

    async def health(request: Request) -> Response:
        if loading():
            return _json({"status": "loading"}, 503)
        # SGLang's /health runs a one-token generation and polls for it once a second.
        if sim.config.server.health_seconds:
            await asyncio.sleep(sim.config.server.health_seconds)
        return Response(b"", media_type=JSON)

    async def ready(request: Request) -> Response:
        return Response(b"", status_code=503 if loading() else 200)

    async def server_info(request: Request) -> Response:
        server = sim.config.server
        # SGLang 0.5.23: the resolved arguments, and one internal state per data-parallel rank
        # with the requests it runs at once. Without --max-running the simulator has no cap,
        # and says none.
        running = sim.config.latency.max_running or None
        priority = sim.config.latency.priority_scheduling
        return _json(
            {
                "model_path": sim.models()[0],
                "served_model_name": sim.models()[0],
                "enable_deterministic_inference": server.deterministic,
                "host": sim.config.host,
                "port": sim.config.port,
                "random_seed": sim.config.seed,
                "max_running_requests": running,
                "dp_size": 1,
                "internal_states": [{"effective_max_running_requests_per_dp": running}],
                "schedule_policy": "fcfs",
                "enable_priority_scheduling": priority,
                "disable_priority_preemption": priority,  # queue order only, as modelled
                "schedule_low_priority_values_first": False,
                # SGLang's default; not imported from the clients, whose import pulls in
                # openai and aiohttp and would slow the simulator's start fivefold.
                "priority_scheduling_preemption_threshold": 10,
                "version": SGLANG_VERSION,
                "simulated": True,
            }
        )

    async def version(request: Request) -> Response:
        return _json({"version": VLLM_VERSION})

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

    async def stats(request: Request) -> Response:
        return _json(sim.stats())

    async def reset(request: Request) -> Response:
        sim.reset()
        return _json({"reset": True})

    policy_hint = "needs a server started with --role policy (or both)"
    reward_hint = "needs a server started with --role reward (or both)"
    cfg = sim.config
    flavour_routes: list[Route] = []
    if cfg.server.sglang_routes:
        flavour_routes += [
            Route("/ready", ready, methods=["GET"]),
            Route("/server_info", server_info, methods=["GET"]),
            Route(
                "/generate",
                model_endpoint(
                    model_route("/generate", sim.generate, cfg.serves_policy, policy_hint)
                ),
                methods=["POST", "PUT"],
            ),
        ]
    if cfg.server.vllm_routes:
        flavour_routes.append(Route("/version", version, methods=["GET"]))
    routes = [
        *flavour_routes,
        Route("/health", health, methods=["GET"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/model_info", model_info, methods=["GET"]),
        Route(
            "/v1/completions",
            model_endpoint(
                model_route(
                    "/v1/completions",
                    sim.complete,
                    cfg.serves_policy,
                    policy_hint,
                    # vLLM and plain OpenAI-compatible servers answer errors as {"error": {...}}.
                    vllm=not cfg.server.sglang_routes,
                )
            ),
            methods=["POST"],
        ),
        Route(
            "/v1/score",
            model_endpoint(model_route("/v1/score", sim.score, cfg.serves_reward, reward_hint)),
            methods=["POST"],
        ),
        Route(
            "/classify",
            model_endpoint(model_route("/classify", sim.classify, cfg.serves_reward, reward_hint)),
            methods=["POST", "PUT"],
        ),
        Route(
            "/pooling",
            model_endpoint(
                model_route("/pooling", sim.pool, cfg.serves_reward, reward_hint, vllm=True)
            ),
            methods=["POST"],
        ),
        Route("/sim/stats", stats, methods=["GET"]),
        Route("/sim/reset", reset, methods=["POST"]),
    ]
    app = SimApp(fast_posts, routes=routes)
    app.state.sim = sim
    return app
