"""API load: latency percentiles of the REST API's list and status routes under 100 concurrent clients, the
server of a baseline git revision (A) against this tree's (B), interleaved A,B,A,B on the same workspace.

Seeds a throwaway SQLite workspace with 200 queued jobs in one project, starts `embodia server` from the
baseline revision's code (`git archive --baseline` into a temp dir) and from this tree (and, with `--workers N`
> 1, this tree's server with N processes, C), then per round and per server: `--clients` asyncio httpx clients
in THIS process send `--requests` requests each to GET /api/v1/jobs?limit=50 (list) and GET /api/v1/jobs/{id}
(status); when the Go load generator `hey` is on PATH (Debian package `hey`) it sends the same number of
requests with the same concurrency too (a client that costs far less CPU than Python's; skipped, saying so,
when absent). Prints p50/p99 per server, route and client, the paired B/A ratio of each round, and the load
average; `--write` puts the tables into benchmarks/results/api.md.

Usage: python benchmarks/api_load.py [--clients 100] [--requests 10] [--rounds 2] [--baseline 7ce719e]
                                     [--workers 2] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import httpx

from embodia.core.atomic import atomic_write_text
from embodia.platform import queue
from embodia.platform.api.auth import create_token
from embodia.platform.deploy import free_port
from embodia.platform.store import open_store

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "api.md"
BASELINE_REV = "7ce719e"  # main before the API latency work (token cache, read transactions, one read per status)


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


def _export_baseline(rev: str, into: Path) -> Path:
    """The `embodia` package of git revision `rev`, unpacked under `into` (the tree is left untouched)."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "embodia"], capture_output=True, check=False)
    if archive.returncode != 0:
        raise SystemExit(f"--baseline {rev}: git archive failed: {archive.stderr.decode()[:300]}")
    into.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def _start_server(home: Path, code_root: Path, port: int, workers: int) -> subprocess.Popen:
    env = {**os.environ, "EMBODIA_HOME": str(home), "PYTHONPATH": str(code_root)}
    env.pop("EMBODIA_DB_URL", None)
    command = [sys.executable, "-c", "from embodia.cli import main; main()", "server", "--port", str(port),
               "--rate-per-minute", "1000000"] + (["--workers", str(workers)] if workers > 1 else [])
    server = subprocess.Popen(command, env=env, cwd=str(home), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.3)
    _stop(server)
    raise RuntimeError(f"embodia server from {code_root} did not start in 90 s")


def _stop(server: subprocess.Popen) -> None:
    try:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        server.kill()


async def _client(base: str, token: str, paths: list[str], out: list[float]) -> None:
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=120) as client:
        for path in paths:
            start = time.perf_counter()
            response = await client.get(path)
            out.append(time.perf_counter() - start)
            if response.status_code != 200:
                raise RuntimeError(f"{path}: HTTP {response.status_code} {response.text[:200]}")


async def _httpx_run(base: str, token: str, clients: int, make_paths) -> list[float]:
    latencies: list[float] = []
    await asyncio.gather(*(_client(base, token, make_paths(i), latencies) for i in range(clients)))
    return latencies


def _hey_run(url: str, token: str, clients: int, requests: int) -> tuple[float, float]:
    """p50 and p99 in ms of `hey -n requests -c clients` against one URL."""
    done = subprocess.run(["hey", "-n", str(requests), "-c", str(clients), "-t", "120",
                           "-H", f"Authorization: Bearer {token}", url], capture_output=True, text=True, check=False)
    codes = re.findall(r"\[(\d{3})\]\s+(\d+) responses", done.stdout.split("Status code distribution:")[-1])
    if done.returncode != 0 or [code for code, _ in codes] != ["200"] or "Error distribution" in done.stdout:
        raise RuntimeError(f"hey against {url} failed or saw non-200 answers:\n{done.stdout[-800:]}{done.stderr}")
    found = dict(re.findall(r"(\d+)%+ in ([0-9.]+) secs", done.stdout))
    return float(found["50"]) * 1000, float(found["99"]) * 1000


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--requests", type=int, default=10, help="requests per client per route and round")
    parser.add_argument("--rounds", type=int, default=2, help="A,B rounds (interleaved)")
    parser.add_argument("--baseline", default=BASELINE_REV, help="git revision of the baseline server (A)")
    parser.add_argument("--workers", type=int, default=1, help="also run this tree's server with N processes (C)")
    parser.add_argument("--write", action="store_true", help=f"write the tables to {RESULTS.relative_to(ROOT)}")
    return parser.parse_args()


def main() -> None:
    args = _parse()
    hey = shutil.which("hey")
    rows: list[str] = []
    samples: dict[tuple[str, str, str], list[tuple[float, float]]] = defaultdict(list)  # (server, route, client)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "ws"
        token, ids = _seed(home, 200)
        servers = {f"A baseline {args.baseline}": (_export_baseline(args.baseline, Path(tmp) / "baseline"), 1),
                   "B this tree": (ROOT, 1)}
        if args.workers > 1:
            servers[f"C this tree, --workers {args.workers}"] = (ROOT, args.workers)
        routes = {"list": ("/api/v1/jobs?limit=50", lambda i: ["/api/v1/jobs?limit=50"] * args.requests),
                  "status": (f"/api/v1/jobs/{ids[0]}", lambda i: [f"/api/v1/jobs/{ids[(i * 7 + k) % len(ids)]}"
                                                                  for k in range(args.requests)])}
        print(f"hey: {hey or 'not installed (apt-get install hey); httpx clients only'}", flush=True)
        total = args.clients * args.requests
        for round_index in range(1, args.rounds + 1):
            for server_name, (code_root, workers) in servers.items():
                port = free_port()
                server = _start_server(home, code_root, port, workers)
                base = f"http://127.0.0.1:{port}"
                try:
                    for route, (one_path, make_paths) in routes.items():
                        before = _load()
                        latencies = asyncio.run(_httpx_run(base, token, args.clients, make_paths))
                        result = {"httpx": (_pct(latencies, 0.5), _pct(latencies, 0.99))}
                        if hey:
                            result["hey"] = _hey_run(base + one_path, token, args.clients, total)
                        for client, (p50, p99) in result.items():
                            samples[(server_name, route, client)].append((p50, p99))
                            rows.append(f"| {round_index} | {server_name} | {route} | {client} | {total} | "
                                        f"{p50:.0f} | {p99:.0f} | {before} -> {_load()} |")
                            print(rows[-1], flush=True)
                finally:
                    _stop(server)
    _report(args, rows, samples, servers, hey)


def _report(args, rows, samples, servers, hey) -> None:
    names = list(servers)
    summary = []
    for route in ("list", "status"):
        for client in ("httpx", "hey") if hey else ("httpx",):
            base = samples[(names[0], route, client)]
            for other in names[1:]:
                ours = samples[(other, route, client)]
                ratio50 = [b[0] / a[0] for a, b in zip(base, ours)]
                ratio99 = [b[1] / a[1] for a, b in zip(base, ours)]
                summary.append(f"| {route} | {client} | {other[0]}/A | "
                               f"{statistics.median(a[0] for a in base):.0f} -> "
                               f"{statistics.median(b[0] for b in ours):.0f} | "
                               f"{statistics.median(a[1] for a in base):.0f} -> "
                               f"{statistics.median(b[1] for b in ours):.0f} | "
                               f"{', '.join(f'{r:.2f}' for r in ratio50)} | {', '.join(f'{r:.2f}' for r in ratio99)} |")
    head = ("| route | client | servers | p50 ms (median of rounds) | p99 ms | p50 ratio per round | "
            "p99 ratio per round |\n|---|---|---|---|---|---|---|")
    table = ("| round | server | route | client | requests | p50 ms | p99 ms | load before -> after |\n"
             "|---|---|---|---|---|---|---|---|\n" + "\n".join(rows))
    text = f"{head}\n" + "\n".join(summary) + "\n\nEvery measurement:\n\n" + table + "\n"
    print("\n" + text)
    if args.write:
        atomic_write_text(RESULTS, RESULTS.read_text().split("<!-- api_load -->")[0] + "<!-- api_load -->\n\n" + text)


if __name__ == "__main__":
    main()
