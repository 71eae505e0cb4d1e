"""API load: latency percentiles of the REST API's list and status routes under 100 concurrent clients, the
server of a baseline git revision (A) against this tree's (B), interleaved A,B,A,B on the same workspace.

Seeds a throwaway SQLite workspace with 200 queued jobs in one project, starts `embodia server` from the
baseline revision's code (`git archive --baseline` into a temp dir) and from this tree (and, with `--workers N`
> 1, this tree's server with N processes, C), then per round and per server: `--clients` asyncio httpx clients
in THIS process send `--requests` requests each to GET /api/v1/jobs?limit=50 (list) and GET /api/v1/jobs/{id}
(status); when the Go load generator `hey` is on PATH (Debian package `hey`) it sends the same number of
requests with the same concurrency too (a client that costs far less CPU than Python's; skipped, saying so,
when absent). Prints p50/p99 per server, route and client, the server's CPU time per request (its process group,
from /proc: what the machine's load moves least), the paired ratio to A of each round, and the load average;
`--write` puts the tables into benchmarks/results/api.md after its `<!-- api_load -->` line.

`--console-pages` instead times the web console's pages (`console_page_loads`): each page's HTML against the API
route that returns the same data (baseline), interleaved A,B,A,B with the paired ratio, and the page's full load
in headless Chromium (navigation start to the load event, static files included); it writes
benchmarks/results/console.md. `--console-home DIR` measures a copy of a real workspace (e.g. after `make demo`).

Usage: python benchmarks/api_load.py [--clients 100] [--requests 10] [--rounds 2] [--baseline 7ce719e]
                                     [--workers 2] [--write]
       python benchmarks/api_load.py --console-pages [--console-home .embodia] [--page-loads 10]
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
START_TIMEOUT_S = 300.0  # a loaded shared machine (load 50-90) has taken more than 90 s
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


def _group_cpu_s(group: int) -> float:
    """CPU seconds (user + system) used so far by every live process of process group `group` (the server and,
    with --workers, its worker processes): per-request server cost that, unlike latency, the load barely moves."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == group:  # fields after the name: state, ppid, pgrp, ..., utime (11), stime (12)
            total += int(fields[11]) + int(fields[12])
    return total / ticks


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
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=5).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.3)
    _stop(server)
    raise RuntimeError(f"embodia server from {code_root} did not start in {START_TIMEOUT_S:.0f} s")


def _stop(server: subprocess.Popen) -> None:
    try:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        server.kill()


async def _client(base: str, token: str, paths: list[str], out: list[float], reconnects: list[str]) -> None:
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=120) as client:
        for path in paths:
            start = time.perf_counter()
            try:
                response = await client.get(path)
            except httpx.RemoteProtocolError:  # the server closed an idle keep-alive connection as we reused it
                reconnects.append(path)      # (a client starved of CPU for uvicorn's 5 s); counted, asked again
                response = await client.get(path)
            out.append(time.perf_counter() - start)
            if response.status_code != 200:
                raise RuntimeError(f"{path}: HTTP {response.status_code} {response.text[:200]}")


async def _httpx_run(base: str, token: str, paths: list[list[str]]) -> list[float]:
    latencies: list[float] = []
    reconnects: list[str] = []
    await asyncio.gather(*(_client(base, token, client_paths, latencies, reconnects) for client_paths in paths))
    if reconnects:
        print(f"  ({len(reconnects)} requests met a closed keep-alive connection and were sent again)", flush=True)
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
    parser.add_argument("--console-pages", action="store_true", help="time the web console's pages instead")
    parser.add_argument("--console-home", type=Path, default=None, help="workspace to copy for --console-pages")
    parser.add_argument("--page-loads", type=int, default=10, help="loads per page for --console-pages")
    return parser.parse_args()


def main() -> None:
    args = _parse()
    if args.console_pages:
        console_page_loads(args.console_home, args.page_loads)
        return
    hey = shutil.which("hey")
    rows: list[str] = []
    samples: dict[tuple[str, str, str], list[tuple[float, float, float]]] = defaultdict(list)  # p50, p99, CPU
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
                        cpu = _group_cpu_s(server.pid)
                        latencies = asyncio.run(_httpx_run(base, token, paths))
                        result = {"httpx": (_pct(latencies, 0.5), _pct(latencies, 0.99), _group_cpu_s(server.pid) - cpu)}
                        if hey:
                            cpu = _group_cpu_s(server.pid)
                            p50, p99 = _hey_run(base + paths[0][0], token, args.clients, total)
                            result["hey"] = (p50, p99, _group_cpu_s(server.pid) - cpu)
                        for client, (p50, p99, cpu_s) in result.items():
                            samples[(server_name, route, client)].append((p50, p99, cpu_s * 1000 / total))
                            rows.append(f"| {round_index} | {server_name} | {route} | {client} | {total} | "
                                        f"{p50:.0f} | {p99:.0f} | {cpu_s * 1000 / total:.2f} | "
                                        f"{before} -> {_load()} |")
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
                cells = [f"{statistics.median(a[k] for a in base):.{d}f} -> {statistics.median(b[k] for b in ours):.{d}f}"
                         for k, d in ((0, 0), (1, 0), (2, 2))]
                ratios = [", ".join(f"{b[k] / a[k]:.2f}" for a, b in zip(base, ours)) for k in range(3)]
                summary.append(f"| {route} | {client} | {other[0]}/A | {' | '.join(cells)} | {' | '.join(ratios)} |")
    head = ("| route | client | servers | p50 ms (median of rounds) | p99 ms | server CPU ms/request | "
            "p50 ratio per round | p99 ratio | CPU ratio |\n|---|---|---|---|---|---|---|---|---|")
    table = ("| round | server | route | client | requests | p50 ms | p99 ms | server CPU ms/request "
             "| load before -> after |\n|---|---|---|---|---|---|---|---|---|\n" + "\n".join(rows))
    text = f"{head}\n" + "\n".join(summary) + "\n\nEvery measurement:\n\n" + table + "\n"
    print("\n" + text)
    if args.write:
        atomic_write_text(RESULTS, RESULTS.read_text().split("<!-- api_load -->")[0] + "<!-- api_load -->\n\n" + text)


# ------------------------------------------------------------------------------------- console page loads

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def _console_workspace(source: Path | None, tmp: Path) -> tuple[Path, str, str]:
    """A workspace to measure (a copy of `source`, or 200 queued jobs) and an admin token of its project."""
    import shutil

    from embodia.platform.api.auth import create_token
    from embodia.platform.store import open_store

    home = tmp / "ws"
    if source is None:
        _seed(home, ROOT, 200)
        project = "bench"
    else:
        shutil.copytree(source, home, ignore=shutil.ignore_patterns("deployments", "console", "*.log"))
        project = "default"
    store = open_store(home)
    try:
        token = create_token(store, project, "admin", name="console benchmark")
    finally:
        store.close()
    return home, project, token


def _page_pairs(api: httpx.Client) -> list[tuple[str, str]]:
    """(console page, API route with the same data) for every page, with one of each kind of object if any."""
    pairs = [("/console/", "/api/v1/project"), ("/console/pipelines", "/api/v1/pipelines/runs"),
             ("/console/jobs", "/api/v1/jobs?limit=200"), ("/console/runs", "/api/v1/artifacts?kind=checkpoint"),
             ("/console/datasets", "/api/v1/artifacts?kind=dataset"), ("/console/reports", "/api/v1/reports"),
             ("/console/registry", "/api/v1/models"), ("/console/deployments", "/api/v1/deployments")]
    jobs = api.get("/api/v1/jobs?limit=1").json()
    if jobs:
        pairs.append((f"/console/jobs/{jobs[0]['id']}", f"/api/v1/jobs/{jobs[0]['id']}"))
    for kind, page in (("dataset", "datasets"), ("checkpoint", "runs"), ("report", "reports")):
        found = api.get(f"/api/v1/artifacts?kind={kind}&limit=1").json()
        if found:
            sha = found[0]["sha256"]
            pairs.append((f"/console/{page}/{sha}", f"/api/v1/artifacts/{sha}"))
            if kind == "checkpoint":
                pairs.append((f"/console/lineage?artifact={sha}", f"/api/v1/lineage/{sha}"))
    return pairs


def _timed_get(client: httpx.Client, path: str) -> float:
    start = time.perf_counter()
    response = client.get(path)
    elapsed = time.perf_counter() - start
    if response.status_code != 200:
        raise RuntimeError(f"{path}: HTTP {response.status_code} {response.text[:200]}")
    return elapsed


def _browser_loads(base: str, token: str, pages: list[str], rounds: int) -> dict[str, float]:
    """Median full load of each page in headless Chromium (navigation start to the load event), in seconds."""
    from playwright.sync_api import sync_playwright

    loads: dict[str, list[float]] = {page: [] for page in pages}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        page.goto(f"{base}/console/login")
        page.fill("#token", token)
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/console/")
        for _ in range(rounds):
            for path in pages:
                page.goto(base + path, wait_until="load")
                loads[path].append(page.evaluate(
                    "() => { const n = performance.getEntriesByType('navigation')[0]; return n.loadEventEnd - n.startTime; }")
                    / 1000)
        browser.close()
    return {path: statistics.median(values) for path, values in loads.items()}


def console_page_loads(source: Path | None, rounds: int) -> None:
    """Time every console page: its HTML against the same data as API JSON (A,B interleaved, paired ratio), and
    its full load in Chromium; print the table and write benchmarks/results/console.md."""
    with tempfile.TemporaryDirectory() as tmp:
        home, project, token = _console_workspace(source, Path(tmp))
        port = free_port()
        server = _start_server(home, ROOT, port, 1)
        base = f"http://127.0.0.1:{port}"
        try:
            api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60)
            console = httpx.Client(base_url=base, timeout=60)
            console.post("/console/login", data={"token": token})
            pairs = _page_pairs(api)
            load_before = _load()
            rows = []
            for page, route in pairs:
                _timed_get(api, route), _timed_get(console, page)  # warm both
                api_s, page_s = [], []
                for _ in range(rounds):  # A, B, A, B: the same load for both
                    api_s.append(_timed_get(api, route))
                    page_s.append(_timed_get(console, page))
                ratios = [b / a for a, b in zip(api_s, page_s)]
                rows.append((page, route, statistics.median(api_s), statistics.median(page_s),
                             statistics.median(ratios)))
            browser = _browser_loads(base, token, [page for page, _ in pairs], rounds)
            load_after = _load()
        finally:
            _stop(server)
    _write_console_results(rows, browser, project, source, rounds, f"{load_before} -> {load_after}")


def _write_console_results(rows, browser: dict[str, float], project: str, source: Path | None, rounds: int,
                           load: str) -> None:
    workspace = f"a copy of `{source}` (project {project})" if source else "200 queued jobs (project bench)"
    setup = (f"Machine: the project's 2-core shared CPU VM, {time.strftime('%Y-%m-%d')}, load average (1/5/15 min) "
             f"{load} during the run. Command: `python benchmarks/api_load.py --console-pages --page-loads {rounds}"
             f"{' --console-home ' + str(source) if source else ''}`. Server: `embodia server` (one uvicorn process) "
             f"over {workspace}. Baseline (A): the API route returning the same data as JSON; ours (B): the console "
             f"page's HTML; {rounds} requests each, interleaved A,B,A,B; ratio = median of paired B/A. Browser: "
             f"headless Chromium at 1280 px, median of {rounds} navigations from start to the load event (static "
             "files from cache after the first).")
    lines = ["# Web console: page load times", "", setup, "",
             "| page | baseline API route | API p50 ms | page HTML p50 ms | paired ratio | Chromium load p50 ms |",
             "|---|---|---|---|---|---|"]
    for page, route, api_s, page_s, ratio in rows:
        lines.append(f"| `{_shorten(page)}` | `{_shorten(route)}` | {api_s * 1000:.1f} | {page_s * 1000:.1f} | "
                     f"{ratio:.2f} | {browser[page] * 1000:.0f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    atomic_write_text(Path(__file__).resolve().parent / "results" / "console.md", text)


def _shorten(path: str) -> str:
    """Paths with a sha256 shortened to its first 12 hex digits."""
    return re.sub(r"([0-9a-f]{12})[0-9a-f]{52}", r"\1…", path)


if __name__ == "__main__":
    main()
