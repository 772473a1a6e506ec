"""A real, scripted HTTP server for client fault tests.

`ScriptedServer` listens on 127.0.0.1 on a free port in a background thread. Each route has a
handler (request -> Reply); replies queued with `script(path, ...)` are served first, which is
how a test says "two 503s, then the handler". Every request is recorded. Hanging replies wait
until the server stops, so a client timeout is the only way out.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: str = ""
    content_type: str = "application/json"
    delay: float = 0.0
    hang: bool = False

    @classmethod
    def json(cls, data: Any, status: int = 200, delay: float = 0.0) -> Reply:
        return cls(status=status, body=json.dumps(data), delay=delay)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: Any  # parsed JSON, or None

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)


Handler = Callable[[Request], Reply]


@dataclass
class ScriptedServer:
    routes: dict[str, Handler] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    in_flight: int = 0
    peak_in_flight: int = 0

    def __post_init__(self) -> None:
        self._scripts: dict[str, deque[Reply]] = defaultdict(deque)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def route(self, path: str, handler: Handler) -> None:
        self.routes[path] = handler

    def script(self, path: str, *replies: Reply) -> None:
        with self._lock:
            self._scripts[path].extend(replies)

    def requests_to(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]

    def start(self) -> ScriptedServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def _next_reply(self, request: Request) -> Reply:
        with self._lock:
            self.requests.append(request)
            queued = self._scripts.get(request.path)
            if queued:
                return queued.popleft()
        handler = self.routes.get(request.path)
        if handler is None:
            return Reply.json({"detail": "Not Found"}, status=404)
        return handler(request)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
                pass

            def do_GET(self) -> None:
                self._serve()

            def do_POST(self) -> None:
                self._serve()

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                request = Request(self.command, self.path, dict(self.headers), body)
                with server._lock:
                    server.in_flight += 1
                    server.peak_in_flight = max(server.peak_in_flight, server.in_flight)
                try:
                    reply = server._next_reply(request)
                    if reply.hang:
                        server._stopping.wait()
                        self.close_connection = True
                        return
                    if reply.delay:
                        time.sleep(reply.delay)
                    payload = reply.body.encode()
                    self.send_response(reply.status)
                    self.send_header("Content-Type", reply.content_type)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True
                finally:
                    with server._lock:
                        server.in_flight -= 1

        return _Handler


# --- handlers that behave like real servers ------------------------------------------------------


def models_handler(model: str = "fake-model") -> Handler:
    return lambda request: Reply.json({"object": "list", "data": [{"id": model}]})


def completions_handler(
    *,
    stop_field: str | None = "matched_stop",
    max_choices: int | None = None,
    usage: bool = True,
    shuffle: bool = False,
    delay: float = 0.0,
) -> Handler:
    """An OpenAI-compatible /v1/completions. Choice i of a request with seed s says
    "step s+i" and stops at "\\n"; `max_choices` imitates servers that ignore n; `stop_field`
    None imitates servers that report no stop string."""

    def handle(request: Request) -> Reply:
        body = request.body or {}
        n = body.get("n", 1)
        count = min(n, max_choices) if max_choices else n
        seed = body.get("seed")
        choices = []
        for i in range(count):
            choice: dict[str, Any] = {
                "index": i,
                "text": f"step {seed + i if seed is not None else i}",
                "finish_reason": "stop",
                "logprobs": None,
            }
            if stop_field:
                choice[stop_field] = "\n"
            choices.append(choice)
        if shuffle:
            choices.reverse()
        data: dict[str, Any] = {
            "id": "cmpl-1",
            "object": "text_completion",
            "created": 0,
            "model": body.get("model"),
            "choices": choices,
        }
        if usage:
            data["usage"] = {
                "prompt_tokens": 7,
                "completion_tokens": 3 * count,
                "total_tokens": 7 + 3 * count,
            }
        return Reply.json(data, delay=delay)

    return handle


def generate_handler() -> Handler:
    """SGLang's native /generate for a batch: input i says "step i" and stops at "\\n"."""

    def handle(request: Request) -> Reply:
        return Reply.json(
            [
                {
                    "text": f"step {i}",
                    "output_ids": [1, 2],
                    "meta_info": {"finish_reason": {"type": "stop", "matched": "\n"},
                                  "prompt_tokens": 4},
                }
                for i in range(len(request.body["text"]))
            ]
        )  # fmt: skip

    return handle
