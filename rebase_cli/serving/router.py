"""The SGLang router (`pip install sglang-router`) in front of several policy servers, and the
launcher that starts it together with its workers as one registered server.

The router proxies /v1/completions and routes each prompt to the worker whose prefix cache
holds most of it (`cache_aware`); it does not proxy the scoring routes (/v1/score, /classify,
/pooling), so reward servers are spread by the client instead (`rebase search --reward URL
--reward URL`). It learns each worker's model from the worker's /server_info.

`GroupLauncher` turns a `ServeSpec` into one command: `python -m rebase_cli.serving.group`,
which starts K workers (each on a free port; SGLang workers on their own GPUs), waits until
they are healthy, then runs the router in front of them and of any `--worker-urls` given. The
group shares one process group, so `rebase serve stop` stops all of it.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from rebase_cli.errors import ServeError, UsageError
from rebase_cli.serving import launchers
from rebase_cli.serving.launchers import Launcher, ServeSpec

ROUTER_POLICY = "cache_aware"
ENGINE_SUFFIX = "+router"  # the engine name of a registered router group ends with it
# The router's default is one check a minute; a dead worker should leave the rotation sooner.
ROUTER_HEALTH_INTERVAL_S = 5


def router_command(
    host: str, port: int, worker_urls: Sequence[str], *, policy: str = ROUTER_POLICY
) -> list[str]:
    """The argv of `sglang_router.launch_router` in front of `worker_urls`."""
    return [
        sys.executable,
        "-m",
        "sglang_router.launch_router",
        "--host",
        host,
        "--port",
        str(port),
        "--worker-urls",
        *worker_urls,
        "--policy",
        policy,
        "--health-check-interval-secs",
        str(ROUTER_HEALTH_INTERVAL_S),
        # Its INFO level logs every request: a long search would fill the disk with them.
        "--log-level",
        "warn",
    ]


def router_installed() -> bool:
    return importlib.util.find_spec("sglang_router") is not None


@dataclass(frozen=True)
class GroupPlan:
    """What the group supervisor starts: `replicas` workers of `worker` (its port is chosen per
    worker), plus `worker_urls` already running elsewhere, behind one router."""

    worker: ServeSpec
    replicas: int
    worker_urls: tuple[str, ...] = ()
    worker_timeout: float = 900.0
    gpus_per_worker: int = 0  # > 0: worker i sees GPUs [i*g, (i+1)*g) (SGLang)

    def to_json(self) -> str:
        data = asdict(self)
        data["worker"]["api_key"] = None  # never on a command line
        return json.dumps(data, sort_keys=True)

    @staticmethod
    def from_json(text: str) -> GroupPlan:
        data = json.loads(text)
        worker = data.pop("worker")
        worker["extra_args"] = tuple(worker.get("extra_args") or ())
        return GroupPlan(
            worker=ServeSpec(**worker),
            replicas=data["replicas"],
            worker_urls=tuple(data["worker_urls"]),
            worker_timeout=data["worker_timeout"],
            gpus_per_worker=data["gpus_per_worker"],
        )


class GroupLauncher:
    """K workers of another engine (and/or servers already running) behind the SGLang router,
    started by one supervisor process (see the module docstring)."""

    options = frozenset(launchers.OPTIONAL_FIELDS) - {"api_key"}

    def __init__(
        self, inner: Launcher | None, replicas: int, worker_urls: Sequence[str] = ()
    ) -> None:
        if replicas < 0 or (replicas == 0 and not worker_urls):
            raise UsageError("--replicas must be at least 1, or give --worker-urls")
        if replicas and inner is None:
            raise UsageError("--replicas needs an --engine to start the workers with")
        self.inner = inner
        self.replicas = replicas
        self.worker_urls = tuple(worker_urls)
        self.name = f"{inner.name if inner and replicas else 'external'}{ENGINE_SUFFIX}"
        self.default_timeout = (inner.default_timeout if inner and replicas else 0.0) + 60.0
        if inner is not None and replicas:
            self.options = inner.options - {"api_key"}

    def preflight(self, spec: ServeSpec) -> None:
        if spec.role != "policy":
            raise UsageError(
                "the SGLang router fronts only policy servers (it does not proxy /v1/score, "
                "/classify or /pooling)",
                "start several reward servers and pass each to `rebase search --reward URL`",
            )
        if not router_installed():
            raise ServeError(
                "the SGLang router is not installed",
                "install it with `pip install sglang-router`",
            )
        if self.inner is not None and self.replicas:
            self.inner.preflight(spec)
            if self.inner.name == "sglang":
                gpus = launchers.gpu_count() or 0
                needed = self.replicas * (spec.tp or 1) * (spec.dp or 1)
                if needed > gpus:
                    raise ServeError(
                        f"{self.replicas} replicas x --tp {spec.tp or 1} x --dp {spec.dp or 1} "
                        f"need {needed} GPUs, found {gpus}",
                        "lower --replicas, or start servers on other nodes and join them with "
                        "--worker-urls",
                    )

    def plan(self, spec: ServeSpec) -> GroupPlan:
        sglang = self.inner is not None and self.inner.name == "sglang"
        return GroupPlan(
            worker=spec,
            replicas=self.replicas,
            worker_urls=self.worker_urls,
            worker_timeout=self.inner.default_timeout if self.inner else 0.0,
            gpus_per_worker=(spec.tp or 1) * (spec.dp or 1) if sglang else 0,
        )

    def command(self, spec: ServeSpec) -> list[str]:
        return [
            sys.executable,
            "-m",
            "rebase_cli.serving.group",
            "--host",
            spec.host,
            "--port",
            str(spec.port),
            "--plan",
            self.plan(spec).to_json(),
        ]

    def env(self, spec: ServeSpec) -> Mapping[str, str]:
        return self.inner.env(spec) if self.inner is not None else {}


def router_workers(url: str, timeout: float = 2.0) -> list[dict[str, object]] | None:
    """The workers the router at `url` routes to, as [{"url", "healthy"}], from its GET
    /workers; None when it does not answer."""
    import httpx

    try:
        data = httpx.get(f"{url}/workers", timeout=timeout).json()
        return [{"url": w["url"], "healthy": bool(w["is_healthy"])} for w in data["workers"]]
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None


def settle(url: str, workers: int, *, timeout: float = 60.0) -> str | None:
    """Wait until the router at `url` routes to `workers` healthy workers whose model it knows
    (it discovers them in the background after its /health already answers 200); their model
    id, or None if that did not happen within `timeout` seconds."""
    import time

    from rebase_cli.serving import health

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listed = router_workers(url) or []
        if len(listed) >= workers and all(w["healthy"] for w in listed):
            model = health.served_model_id(url)
            if model not in (None, "unknown"):
                return model
        time.sleep(0.2)
    return None
