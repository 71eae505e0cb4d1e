"""API load: latency percentiles of the REST API's list and status routes under 100 concurrent clients.

Starts `embodia server` (uvicorn, one process) on a throwaway SQLite workspace with 200 queued jobs in one
project, then runs `--clients` asyncio httpx clients in THIS process (the server is another process), each
sending `--requests` requests in turn to GET /api/v1/jobs?limit=50 (list) or GET /api/v1/jobs/{id} (status).
Prints p50/p90/p99/max and throughput per route, and the load average before and after (on a shared machine
the figures move with it).

Usage: python benchmarks/api_load.py [--clients 100] [--requests 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from embodia.platform import queue
from embodia.platform.api.auth import create_token
from embodia.platform.deploy import free_port
from embodia.platform.store import open_store


def _load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def _seed(home: Path, jobs: int) -> tuple[str, list[int]]:
    store = open_store(home)
    try:
        token = create_token(store, "bench", "read")
        ids = [queue.submit(store, "noop", {}, project="bench").id for _ in range(jobs)]
    finally:
        store.close()
    return token, ids


def _start_server(home: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "EMBODIA_HOME": str(home)}
    env.pop("EMBODIA_DB_URL", None)
    command = [sys.executable, "-c", "from embodia.cli import main; main()", "server", "--port", str(port),
               "--rate-per-minute", "1000000"]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError("embodia server did not start in 60 s")


async def _client(base: str, token: str, paths: list[str], out: list[float]) -> None:
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
        for path in paths:
            start = time.perf_counter()
            response = await client.get(path)
            out.append(time.perf_counter() - start)
            if response.status_code != 200:
                raise RuntimeError(f"{path}: HTTP {response.status_code} {response.text[:200]}")


async def _run(base: str, token: str, clients: int, make_paths) -> tuple[list[float], float]:
    latencies: list[float] = []
    start = time.perf_counter()
    await asyncio.gather(*(_client(base, token, make_paths(i), latencies) for i in range(clients)))
    return sorted(latencies), time.perf_counter() - start


def _pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--requests", type=int, default=20, help="requests per client per route")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "ws"
        token, ids = _seed(home, 200)
        port = free_port()
        server = _start_server(home, port)
        base = f"http://127.0.0.1:{port}"
        routes = {"list GET /api/v1/jobs?limit=50": lambda i: ["/api/v1/jobs?limit=50"] * args.requests,
                  "status GET /api/v1/jobs/{id}": lambda i: [f"/api/v1/jobs/{ids[(i * 7 + k) % len(ids)]}"
                                                             for k in range(args.requests)]}
        try:
            print("| route | clients | requests | p50 ms | p90 ms | p99 ms | max ms | requests/s "
                  "| load before -> after |")
            print("|---|---|---|---|---|---|---|---|---|")
            for name, make_paths in routes.items():
                before = _load()
                latencies, wall = asyncio.run(_run(base, token, args.clients, make_paths))
                print(f"| {name} | {args.clients} | {len(latencies)} | {_pct(latencies, 0.5):.0f} | "
                      f"{_pct(latencies, 0.9):.0f} | {_pct(latencies, 0.99):.0f} | {latencies[-1] * 1000:.0f} | "
                      f"{len(latencies) / wall:.0f} | {before} -> {_load()} |", flush=True)
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
