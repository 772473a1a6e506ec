"""Throughput of the simulator: completion requests of one short step per second.

    REBASE_DATA_DIR=../shared/data python benchmarks/bench_sim.py [--requests 6000]
        [--concurrency 8] [--clients 1,2] [--route completions|score] [--inprocess]

The server runs as its own process (`python -m rebase_cli.sim --port 0`, latency modelling
off) and is driven by
  * httpx.AsyncClient load generators, in this process (clients=1) or in several processes
    (httpx's pool slows down past ~16 connections per client, hence the modest default);
  * a lean keep-alive client on raw asyncio streams (pre-encoded requests), which costs the
    shared cores little and so shows what the server itself sustains.
Load generators compete with the server for the same cores, so besides the wall-clock rate
the script prints the server's own CPU time per request and the rate the server would sustain
with one core to itself (1 / CPU per request). `--inprocess` also measures the in-thread
server of `rebase_cli.sim.inprocess` (server and client then share one GIL).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import time

import httpx
import psutil

from rebase_cli.datasets import load_dataset
from rebase_cli.prompts import load_template
from rebase_cli.sim.spawn import SpawnedSimulator, spawn

TEMPLATE = "llemma-metamath"


def request_bodies(route: str, count: int) -> list[dict]:
    """Root prompts (completions) or first-step scoring calls over GSM8K questions."""
    template = load_template(TEMPLATE)
    problems = load_dataset("gsm8k").problems
    bodies = []
    for i in range(count):
        prompt = template.render(problems[i % len(problems)].question)
        if route == "completions":
            bodies.append(
                {
                    "model": "sim-policy",
                    "prompt": prompt,
                    "n": 1,
                    "max_tokens": 256,
                    "temperature": 1.0,
                    "stop": list(template.stop),
                    "seed": i,
                }
            )
        else:
            bodies.append(
                {
                    "query": prompt,
                    "items": ["Step 1: We compute 3 + 4 = 7." + template.prm.step_tag],
                    "label_token_ids": [template.prm.good_token_id, template.prm.bad_token_id],
                    "apply_softmax": True,
                }
            )
    return bodies


async def drive(url: str, path: str, bodies: list[dict], concurrency: int) -> int:
    """Send every body with at most `concurrency` in flight; return the count of HTTP 200s."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    ok = 0
    queue = iter(bodies)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:

        async def worker() -> None:
            nonlocal ok
            for body in queue:
                response = await client.post(path, json=body)
                ok += response.status_code == 200

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ok


async def drive_raw(url: str, path: str, bodies: list[dict], concurrency: int) -> int:
    """Like `drive`, over plain keep-alive HTTP/1.1 connections with pre-encoded requests."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    requests = []
    for body in bodies:
        data = json.dumps(body).encode()
        head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        requests.append(f"{head}Content-Length: {len(data)}\r\n\r\n".encode() + data)
    queue = iter(requests)
    ok = 0

    async def connection() -> None:
        nonlocal ok
        reader, writer = await asyncio.open_connection(host, int(port))
        for request in queue:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
            ok += head.startswith(b"HTTP/1.1 200")
        writer.close()

    await asyncio.gather(*(connection() for _ in range(concurrency)))
    return ok


def _client_process(url: str, path: str, bodies: list[dict], concurrency: int, out) -> None:
    out.put(asyncio.run(drive(url, path, bodies, concurrency)))


def start_server(route: str) -> SpawnedSimulator:
    role = "policy" if route == "completions" else "reward"
    return spawn(["--role", role, "--port", "0", "--template", TEMPLATE])


def run(url: str, path: str, bodies: list[dict], clients: int, concurrency: int, pid: int):
    """Send all bodies with `clients` load generators (0: the raw client); return
    (successes, wall seconds, server CPU seconds)."""
    server_proc = psutil.Process(pid)
    cpu_before = sum(server_proc.cpu_times()[:2])
    start = time.perf_counter()
    if clients == 0:
        ok = asyncio.run(drive_raw(url, path, bodies, concurrency))
    elif clients == 1:
        ok = asyncio.run(drive(url, path, bodies, concurrency))
    else:
        out: multiprocessing.Queue = multiprocessing.Queue()
        shares = [bodies[i::clients] for i in range(clients)]
        procs = [
            multiprocessing.Process(
                target=_client_process, args=(url, path, share, concurrency, out)
            )
            for share in shares
        ]
        for proc in procs:
            proc.start()
        ok = sum(out.get() for _ in procs)
        for proc in procs:
            proc.join()
    wall = time.perf_counter() - start
    cpu = sum(server_proc.cpu_times()[:2]) - cpu_before
    return ok, wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--concurrency", type=int, default=8, help="in flight per client")
    parser.add_argument("--raw-concurrency", type=int, default=32)
    parser.add_argument("--clients", default="1,2", help="httpx load-generator processes to try")
    parser.add_argument("--route", choices=("completions", "score"), default="completions")
    parser.add_argument("--inprocess", action="store_true")
    args = parser.parse_args()
    path = "/v1/completions" if args.route == "completions" else "/v1/score"
    bodies = request_bodies(args.route, args.requests)
    print(
        f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; "
        f"route {path}; {args.requests} requests of one step"
    )
    server = start_server(args.route)
    url = server.url
    try:
        asyncio.run(drive(url, path, bodies[:200], 8))  # warm-up
        runs = [(int(c), args.concurrency) for c in args.clients.split(",")]
        for clients, concurrency in [*runs, (0, args.raw_concurrency)]:
            ok, wall, cpu = run(url, path, bodies, clients, concurrency, server.process.pid)
            who = (
                f"{clients} httpx process(es) x {concurrency} in flight"
                if clients
                else f"raw keep-alive client, {concurrency} connections"
            )
            print(
                f"server process + {who}: {ok / wall:6.0f} req/s wall "
                f"({ok}/{len(bodies)} ok in {wall:.2f} s); server CPU {cpu / ok * 1e6:4.0f} µs/req"
                f" -> {ok / cpu:5.0f} req/s per server core"
            )
    finally:
        server.stop()
    if args.inprocess:
        from rebase_cli.sim import SimConfig, start_in_thread

        role = "policy" if args.route == "completions" else "reward"
        with start_in_thread(SimConfig(role=role, port=0, template=TEMPLATE)) as sim:
            asyncio.run(drive(sim.url, path, bodies[:200], 8))
            start = time.perf_counter()
            ok = asyncio.run(drive(sim.url, path, bodies, args.concurrency))
            wall = time.perf_counter() - start
        print(f"in-process server thread + client in one process: {ok / wall:7.0f} req/s wall")


if __name__ == "__main__":
    main()
