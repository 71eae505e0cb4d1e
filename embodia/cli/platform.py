"""`embodia lineage | artifacts | models | jobs | worker`: the registry, the job queue and its workers.

All of them open the workspace of `EMBODIA_HOME` (default `./.embodia`) or the database of `EMBODIA_DB_URL`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from embodia.cli.options import MAX_ID, MAX_LIST
from embodia.core.errors import UserError

artifacts_app = typer.Typer(help="Registered artifacts (datasets, checkpoints, models, reports).", no_args_is_help=True)
models_app = typer.Typer(help="Model versions and their aliases (staging, production, ...).", no_args_is_help=True)
jobs_app = typer.Typer(help="The durable job queue.", no_args_is_help=True)
runs_app = typer.Typer(help="Pipeline runs of this workspace (from embodia run, quickstart and the API).",
                       no_args_is_help=True)
console = Console(soft_wrap=True)
_STATUS_STYLE = {"queued": "cyan", "held": "bright_red", "running": "yellow", "succeeded": "green", "failed": "red",
                 "cancelled": "magenta", "interrupted": "bright_red", "ran": "green", "cached": "cyan",
                 "blocked": "yellow", "skipped": "dim", "pending": "dim"}


def _store():
    from embodia.platform.store import open_store

    return open_store()


# columns that must stay readable in a narrow terminal (the others wrap)
_MIN_WIDTH = {"id": 4, "#": 2, "status": 9, "reference": 28, "model": 8, "version": 7, "aliases": 12, "artifact": 12}


def _table(title: str, columns: tuple[str, ...]) -> Table:
    """A Rich table whose key columns never shrink to an ellipsis."""
    table = Table(title=title)
    for column in columns:
        table.add_column(column, min_width=_MIN_WIDTH.get(column), no_wrap=column in _MIN_WIDTH,
                         overflow="fold")
    return table


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else "-"


def _size(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)


# ------------------------------------------------------------------------------------------------ lineage


def _label(node) -> str:
    from rich.markup import escape

    info = node.artifact
    edge = f"[dim]{escape(node.edge_name)} =[/] " if node.edge_name else ""
    if info is None:
        return f"{edge}[red]sha256:{node.sha256[:12]}[/] [dim](not registered)[/]"
    config = info.manifest.get("config", {})
    detail = ", ".join(f"{k}={_short_value(config[k])}" for k in ("task", "algo", "suite", "policy") if k in config)
    text = (f"{edge}[bold]{escape(info.ref)}[/] [dim]{escape(info.stage)}"
            f"{' · ' + escape(detail) if detail else ''}{' · job ' + str(info.creator_job_id) if info.creator_job_id else ''}[/]")
    for model in node.models:
        text += f"  [green]{escape(model)}[/]"
    for deployment in node.deployments:
        text += f"  [blue]deployed {escape(deployment)}[/]"
    return text + ("  [dim](shown above)[/]" if node.repeated else "")


def _short_value(value: Any) -> str:
    """A config value for one line: an inlined suite or other mapping by its name."""
    if isinstance(value, dict):
        return str(value.get("name", "{...}"))
    return str(value)


def _tree(node, tree: Tree) -> Tree:
    for child in node.children:
        _tree(child, tree.add(_label(child)))
    return tree


def lineage_command(ref: str = typer.Argument(..., help="model:NAME@ALIAS, model:NAME@vN, KIND:sha256:PREFIX or "
                                                        "sha256:PREFIX"),
                    as_json: bool = typer.Option(False, "--json", help="print the graph as JSON for tools")) -> None:
    """Show what an artifact was made from (down to raw data) and everything derived from it."""
    from embodia.platform import registry

    store = _store()
    if as_json:
        print(json.dumps(registry.lineage(store, ref), indent=2, default=str))
        return
    up, down = registry.ancestors(store, ref), registry.descendants(store, ref)
    console.print(_tree(up, Tree(f"{_label(up)}  [dim]made from[/]")), soft_wrap=False)
    console.print(_tree(down, Tree(f"{_label(down)}  [dim]used by[/]")) if down.children
                  else "[dim]nothing is derived from it yet[/]", soft_wrap=False)


# ------------------------------------------------------------------------------------------------ artifacts


@artifacts_app.command("list")
def artifacts_list(kind: str = typer.Option(None, help="only this kind (dataset, checkpoint, model, report, ...)"),
                   tag: str = typer.Option(None, help="only artifacts with this tag"),
                   limit: int = typer.Option(50, min=1, max=MAX_LIST, help="at most this many, newest first")) -> None:
    """List registered artifacts."""
    from embodia.platform import registry

    rows = registry.list_artifacts(_store(), kind=kind, tag=tag, limit=limit)
    table = _table(f"{len(rows)} artifacts", ("reference", "stage", "name", "size", "job", "tags", "created"))
    for info in rows:
        table.add_row(info.ref, info.stage, info.name or "", _size(info.size), str(info.creator_job_id or ""),
                      ", ".join(info.tags), _when(info.created_at))
    console.print(table)


@artifacts_app.command("show")
def artifacts_show(ref: str = typer.Argument(..., help="artifact reference")) -> None:
    """Print an artifact's record and manifest as JSON."""
    from embodia.platform import registry

    print(json.dumps(registry.info_dict(registry.resolve(_store(), ref)), indent=2, default=str))


@artifacts_app.command("residency")
def artifacts_residency(ref: str = typer.Argument(..., help="artifact reference"),
                        jurisdiction: str = typer.Argument(..., help="jurisdiction tag(s), e.g. BR or EU,JP")) -> None:
    """Tag an artifact (and everything already derived from it) with data-residency jurisdictions."""
    from embodia.platform import registry

    info = registry.set_jurisdiction(_store(), ref, jurisdiction)
    console.print(f"{info.ref}: residency {info.jurisdiction} (placement keeps it and what derives from it in "
                  "the regions the policy allows)")


@artifacts_app.command("delete")
def artifacts_delete(ref: str = typer.Argument(..., help="artifact reference"),
                     force: bool = typer.Option(False, help="delete even if other artifacts derive from it")) -> None:
    """Delete an artifact and its stored content (refused while others derive from it, unless --force)."""
    from embodia.platform import registry

    info = registry.delete_artifact(_store(), ref, force=force)
    console.print(f"deleted {info.ref}")


# ------------------------------------------------------------------------------------------------ models


@models_app.command("list")
def models_list(name: str = typer.Argument(None, help="only this model")) -> None:
    """List model versions with their aliases, reports and gate verdicts."""
    from embodia.platform import registry

    rows = registry.list_model_versions(_store(), name)
    table = _table(f"{len(rows)} model versions",
                   ("model", "version", "aliases", "artifact", "report", "gate", "by", "created"))
    for info in rows:
        gate = (info.gate or {}).get("verdict", "") if info.gate else ""
        table.add_row(info.name, f"v{info.version}", ", ".join(info.aliases), info.artifact_sha256[:12],
                      (info.report_sha256 or "")[:12], str(gate), info.created_by, _when(info.created_at))
    console.print(table)


@models_app.command("register")
def models_register(name: str = typer.Argument(..., help="model name"),
                    ref: str = typer.Argument(..., help="the artifact to register, e.g. model:sha256:1a2b"),
                    report: str = typer.Option(None, help="evaluation report artifact behind this version"),
                    note: str = typer.Option("", help="a note kept with the version")) -> None:
    """Register an artifact as the next version of a model."""
    from embodia.platform import registry

    info = registry.register_model_version(_store(), name, ref, report=report, note=note)
    console.print(f"{info.ref} -> sha256:{info.artifact_sha256[:12]}")


@models_app.command("alias")
def models_alias(name: str = typer.Argument(..., help="model name"),
                 alias: str = typer.Argument(..., help="alias to set or move, e.g. production"),
                 version: str = typer.Argument(None, help="vN, N, latest or another alias; omit to show the history"),
                 why: str = typer.Option("", help="why it moves (kept in the history)"),
                 remove: bool = typer.Option(False, help="remove the alias instead")) -> None:
    """Set, move or remove an alias (who/when/why recorded), or show its history."""
    from embodia.platform import registry

    store = _store()
    if remove:
        registry.remove_alias(store, name, alias, why=why)
        console.print(f"removed model:{name}@{alias}")
    elif version is not None:
        info = registry.set_alias(store, name, alias, version, why=why)
        console.print(f"model:{name}@{alias} -> v{info.version}")
    table = _table(f"history of model:{name}@{alias}", ("when", "from", "to", "who", "why"))
    for event in registry.alias_history(store, name, alias):
        table.add_row(_when(event.at), f"v{event.from_version}" if event.from_version else "-",
                      f"v{event.to_version}" if event.to_version else "(removed)", event.who, event.why)
    console.print(table)


# ------------------------------------------------------------------------------------------------ jobs


def _status(status: str) -> str:
    return f"[{_STATUS_STYLE.get(status, 'white')}]{status}[/]"


@jobs_app.command("list")
def jobs_list(status: str = typer.Option(None, help="queued, held, running, succeeded, failed or cancelled"),
              project: str = typer.Option(None, help="only this project"),
              limit: int = typer.Option(50, min=1, max=MAX_LIST, help="at most this many, newest first")) -> None:
    """List jobs."""
    from embodia.platform import queue

    from embodia.platform.models import utcnow

    rows = queue.list_jobs(_store(), status=status, project=project, limit=limit)
    now = utcnow()
    table = _table(f"{len(rows)} jobs",
                   ("id", "type", "project", "prio", "status", "attempts", "worker", "output", "error", "created"))
    for job in rows:
        status = _status(job.status)
        if job.status == "running" and job.lease_expires_at is not None and job.lease_expires_at < now:
            status += " [red](lease expired)[/]"  # its worker died; the next claim takes it over
        table.add_row(str(job.id), job.type, job.project, str(job.priority), status,
                      f"{job.attempts}/{job.max_attempts}", job.lease_owner or "", (job.output_sha256 or "")[:12],
                      (f"{job.error_type}: " if job.error_type else "") + (job.error or "")[:60], _when(job.created_at))
    console.print(table)


@jobs_app.command("show")
def jobs_show(job_id: int = typer.Argument(..., min=1, max=MAX_ID, help="job id")) -> None:
    """Show a job, its config and every attempt."""
    from embodia.platform import queue

    store = _store()
    job = queue.get_job(store, job_id)
    console.print(f"job {job.id} [bold]{job.type}[/] ({job.project}, priority {job.priority}, {job.cpus:g} cpus): "
                  f"{_status(job.status)}" + (" [magenta](cancel requested)[/]" if job.cancel_requested else ""))
    console.print(f"config {json.dumps(job.config)}  inputs {json.dumps(job.inputs)}", highlight=False)
    if job.output_sha256:
        console.print(f"output sha256:{job.output_sha256}")
    if job.error:
        console.print(f"[red]{job.error_type}: {job.error}[/]", highlight=False)
    table = _table("attempts",
                   ("#", "worker", "status", "exit", "error", "cpu s", "metrics", "started", "finished", "log"))
    for attempt in queue.attempts(store, job_id):
        metrics = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in sorted(attempt.metrics.items()))
        table.add_row(str(attempt.number), attempt.worker, _status(attempt.status), str(attempt.exit_code or ""),
                      (f"{attempt.error_type}: " if attempt.error_type else "") + (attempt.error or "")[:50],
                      f"{attempt.cpu_seconds:.1f}", metrics[:60], _when(attempt.started_at),
                      _when(attempt.finished_at), attempt.log_path)
    console.print(table)


@jobs_app.command("logs")
def jobs_logs(job_id: int = typer.Argument(..., min=1, max=MAX_ID, help="job id"),
              attempt: int = typer.Option(None, min=1, max=100, help="attempt number (default: the latest)"),
              follow: bool = typer.Option(False, "--follow", "-f", help="keep printing until the attempt ends")) -> None:
    """Print an attempt's log (live with --follow)."""
    from embodia.platform import queue

    store = _store()
    job = queue.get_job(store, job_id)
    number = attempt or job.attempts
    if number < 1:
        raise UserError(f"job {job_id} has not started yet ({job.status}); nothing logged")
    path = queue.attempt_log(store, job_id, number)
    offset = _print_from(path, 0)
    while follow and _attempt_running(store, job_id, number):
        time.sleep(0.5)
        offset = _print_from(path, offset)
    if follow:
        _print_from(path, offset)


def _print_from(path: Path, offset: int) -> int:
    if not path.is_file():
        return offset
    with open(path, "rb") as handle:
        handle.seek(offset)
        chunk = handle.read()
    if chunk:
        print(chunk.decode("utf-8", "replace"), end="", flush=True)
    return offset + len(chunk)


def _attempt_running(store, job_id: int, number: int) -> bool:
    from embodia.platform import queue

    rows = [a for a in queue.attempts(store, job_id) if a.number == number]
    return bool(rows) and rows[0].status == "running"


@jobs_app.command("submit")
def jobs_submit(job_type: str = typer.Argument(..., help="job type, e.g. sleep"),
                config: str = typer.Option("{}", help="the stage config as JSON"),
                inputs: list[str] = typer.Option([], "--input", help="NAME=REF (registry reference or path)"),
                project: str = typer.Option("default", help="project (quotas apply per project)"),
                priority: int = typer.Option(0, min=-1_000_000, max=1_000_000, help="higher runs first"),
                cpus: float = typer.Option(1.0, min=0.01, max=1024.0, help="CPUs the job may use (sets its thread counts)"),
                max_attempts: int = typer.Option(3, min=1, max=100, help="tries for internal errors"),
                region: str = typer.Option(None, help="run only in this region (Ray nodes labelled region=NAME)"),
                ) -> None:
    """Queue a job."""
    from embodia.platform import queue

    try:
        parsed = json.loads(config)
    except ValueError as error:
        raise UserError(f"--config is not valid JSON ({error})") from None
    pairs = dict(item.split("=", 1) for item in inputs if "=" in item)
    if len(pairs) != len(inputs):
        raise UserError("--input expects NAME=REF")
    job = queue.submit(_store(), job_type, parsed, inputs=pairs, project=project, priority=priority, cpus=cpus,
                       max_attempts=max_attempts, region=region)
    console.print(f"queued job {job.id}" + (f" in region {job.region}" if job.region else ""))


@jobs_app.command("cancel")
def jobs_cancel(job_id: int = typer.Argument(..., min=1, max=MAX_ID, help="job id")) -> None:
    """Cancel a queued job, or ask a running one to stop."""
    from embodia.platform import queue

    job = queue.cancel(_store(), job_id)
    console.print(f"job {job.id}: {_status(job.status)}" + (" (its worker stops it)" if job.status == "running" else ""))


@jobs_app.command("retry")
def jobs_retry(job_id: int = typer.Argument(..., min=1, max=MAX_ID, help="job id")) -> None:
    """Queue a failed or cancelled job again."""
    from embodia.platform import queue

    job = queue.retry(_store(), job_id)
    console.print(f"job {job.id}: {_status(job.status)}")


# ------------------------------------------------------------------------------------------------ worker


def worker_command(lease_s: float = typer.Option(30.0, min=1.0, max=86_400.0, help="lease length; heartbeats renew it every third"),
                   poll_s: float = typer.Option(1.0, min=0.01, max=3600.0, help="wait between polls of an empty queue"),
                   max_jobs: int = typer.Option(None, min=1, max=10**9, help="stop after this many jobs (per slot)"),
                   until_idle: bool = typer.Option(False, help="stop when the queue has nothing runnable"),
                   job_type: list[str] = typer.Option([], "--type", help="only these job types"),
                   name: str = typer.Option(None, help="worker name (default host:pid:random)"),
                   executor: str = typer.Option("local", help="where attempts run: local (subprocesses here) or ray "
                                                              "(Ray tasks; regions are node labels)"),
                   ray_address: str = typer.Option(None, help="Ray cluster for --executor ray (default: a local Ray)"),
                   slots: int = typer.Option(0, min=0, max=4096, help="jobs run at once (0: 1 locally, the cluster's "
                                                                      "CPUs with --executor ray)"),
                   ) -> None:
    """Run queued jobs, each in its own process, until stopped (Ctrl-C or SIGTERM hands the running jobs back to
    the queue, their partial work kept for the next worker)."""
    from embodia.platform.executors import make_executor
    from embodia.platform.worker import Worker, run_slots, stop_on_signals

    stop_on_signals()
    runs_on = make_executor(executor, ray_address=ray_address)
    try:
        store = _store()
        slots = slots or (1 if runs_on.name == "local" else max(1, int(runs_on.capacity()[0])))
        workers = [Worker(store, name if slots == 1 or name is None else f"{name}-{index}", lease_s=lease_s,
                          poll_s=poll_s, types=job_type or None, executor=runs_on) for index in range(slots)]
        console.print(f"worker {workers[0].name} on {store.url} ({runs_on.name}, {slots} at once)", highlight=False)
        try:
            ran = run_slots(workers, max_jobs=max_jobs, until_idle=until_idle)
        except KeyboardInterrupt:
            console.print(f"worker {workers[0].name} stopped")
            return
        console.print(f"worker {workers[0].name}: {ran} jobs")
    finally:
        runs_on.close()


@runs_app.command("list")
def runs_list(project: str = typer.Option(None, help="only this project"),
              limit: int = typer.Option(50, min=1, max=MAX_LIST, help="at most this many, newest first")) -> None:
    """List pipeline runs: state (interrupted = its process died), steps, where they came from."""
    from embodia.platform import runs

    store = _store()
    try:
        rows = runs.list_runs(store, project, limit=limit)
    finally:
        store.close()
    table = _table(f"{len(rows)} pipeline runs", ("id", "pipeline", "project", "status", "steps", "from", "started"))
    for run in rows:
        done = sum(state in ("ran", "cached") for state in run["steps"].values())
        table.add_row(str(run["id"]), run["name"], run["project"], _status(run["status"]),
                      f"{done}/{len(run['steps'])} done", run["origin"], run["started_at"][:19].replace("T", " "))
    console.print(table)


@runs_app.command("show")
def runs_show(run_id: int = typer.Argument(..., min=1, max=MAX_ID, help="pipeline run id (see embodia runs list)"),
              as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Show a pipeline run: each step's state, job, cache hit, artifact and message."""
    from embodia.platform import runs

    store = _store()
    try:
        run = runs.find_run(store, run_id)
    finally:
        store.close()
    if as_json:
        print(json.dumps(run, indent=2))
        return
    console.print(f"pipeline run {run['id']} [bold]{run['name']}[/] ({run['project']}, from {run['origin']} "
                  f"{escape(run['source'])}): {_status(run['status'])}", highlight=False)
    console.print(f"started {run['started_at'][:19]} UTC" + (f", ended {run['finished_at'][:19]} UTC"
                                                             if run["finished_at"] else ""), highlight=False)
    if run["error"]:
        console.print(f"[red]{escape(run['error'])}[/]", highlight=False)
    table = _table("steps", ("step", "type", "status", "job", "cache", "artifact", "message"))
    for name, state in run["steps"].items():
        job = run["jobs"].get(name)
        table.add_row(name, run["types"][name], _status(state), str(job) if job else "-",
                      "hit" if run["cached"][name] else "-", (run["outputs"].get(name) or "-")[:12],
                      escape(run["messages"].get(name, "")[:100]))
    console.print(table)


def register(app: typer.Typer) -> None:
    """Mount the platform commands on the main app."""
    app.command("lineage")(lineage_command)
    app.command("worker")(worker_command)
    app.add_typer(artifacts_app, name="artifacts")
    app.add_typer(models_app, name="models")
    app.add_typer(jobs_app, name="jobs")
    app.add_typer(runs_app, name="runs")
