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
import json
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
from embodia.platform.deploy import free_port

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "api.md"
ROUTES = ("list", "status")
BASELINE_REV = "92b5855"  # main before the API latency work (token cache, read transactions, one read per status)


def _load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


SEED = """
import json, sys
from embodia.platform import queue
from embodia.platform.api.auth import create_token
from embodia.platform.store import open_store
store = open_store(sys.argv[1])
token = create_token(store, "bench", "read")
ids = [queue.submit(store, "noop", {}, project="bench").id for _ in range(int(sys.argv[2]))]
store.close()
print(json.dumps({"token": token, "ids": ids}))
"""


def _seed(home: Path, code_root: Path, jobs: int) -> tuple[str, list[int]]:
    """A workspace with `jobs` queued jobs in project 'bench', made by the code it will be served with (so each
    server finds its own schema revision); returns a read token and the job ids."""
    env = {**os.environ, "PYTHONPATH": str(code_root)}
    env.pop("EMBODIA_DB_URL", None)
    done = subprocess.run([sys.executable, "-c", SEED, str(home), str(jobs)], env=env, capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"seeding {home} with the code of {code_root} failed:\n{done.stderr[-2000:]}")
    seeded = json.loads(done.stdout.strip().splitlines()[-1])
    return seeded["token"], seeded["ids"]


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


async def _httpx_run(base: str, token: str, paths: list[list[str]]) -> list[float]:
    latencies: list[float] = []
    await asyncio.gather(*(_client(base, token, client_paths, latencies) for client_paths in paths))
    return latencies


def _paths(route: str, ids: list[int], client: int, requests: int) -> list[str]:
    """What client number `client` asks in turn: the job list, or the status of jobs from its own offset."""
    if route == "list":
        return ["/api/v1/jobs?limit=50"] * requests
    return [f"/api/v1/jobs/{ids[(client * 7 + k) % len(ids)]}" for k in range(requests)]


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
        servers = {f"A baseline {args.baseline}": (_export_baseline(args.baseline, Path(tmp) / "baseline"), 1),
                   "B this tree": (ROOT, 1)}
        if args.workers > 1:
            servers[f"C this tree, --workers {args.workers}"] = (ROOT, args.workers)
        homes = {name: Path(tmp) / f"ws-{name[0]}" for name in servers}
        seeded = {name: _seed(homes[name], code_root, 200) for name, (code_root, _) in servers.items()}
        print(f"hey: {hey or 'not installed (apt-get install hey); httpx clients only'}", flush=True)
        total = args.clients * args.requests
        for round_index in range(1, args.rounds + 1):
            for server_name, (code_root, workers) in servers.items():
                token, ids = seeded[server_name]
                port = free_port()
                server = _start_server(homes[server_name], code_root, port, workers)
                base = f"http://127.0.0.1:{port}"
                try:
                    for route in ROUTES:
                        before = _load()
                        paths = [_paths(route, ids, i, args.requests) for i in range(args.clients)]
                        latencies = asyncio.run(_httpx_run(base, token, paths))
                        result = {"httpx": (_pct(latencies, 0.5), _pct(latencies, 0.99))}
                        if hey:
                            result["hey"] = _hey_run(base + paths[0][0], token, args.clients, total)
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
