"""`embodia run PIPELINE.yaml` (cached DAG of stages), `embodia quickstart` and `embodia deployments ...`."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from embodia.core.errors import UserError

console = Console()
deployments_app = typer.Typer(help="Policy servers managed by the platform (started by pipeline `deploy` steps).",
                              no_args_is_help=True)
STATUS_STYLE = {"cached": "cyan", "ran": "green", "blocked": "yellow", "skipped": "dim", "failed": "red",
                "hit": "cyan", "miss": "yellow", "forced": "magenta", "pending": "dim"}
BUILTIN_DIR = Path(__file__).resolve().parents[1] / "platform" / "pipelines"


def pipeline_path(name_or_path: str) -> Path:
    """A pipeline file path, or the built-in pipeline of that name (quickstart, rl)."""
    path = Path(name_or_path)
    if path.exists() or path.suffix in (".yaml", ".yml"):
        return path
    builtin = BUILTIN_DIR / f"{name_or_path}.yaml"
    if builtin.is_file():
        return builtin
    names = ", ".join(sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml")))
    raise UserError(f"pipeline {name_or_path!r} is neither a file nor a built-in pipeline ({names})")


def run_command(
    pipeline: str = typer.Argument(..., help="pipeline YAML file, or a built-in name (quickstart, rl)"),
    force: Optional[list[str]] = typer.Option(None, "--force", help="rerun this step and its dependents (repeatable)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the plan (cache hits and misses) and stop"),
    parallel: int = typer.Option(0, min=0, max=1024, help="steps run at once (0: one per CPU core)"),
    executor: str = typer.Option("local", help="where jobs run: local (subprocesses here) or ray (Ray tasks)"),
    ray_address: str | None = typer.Option(None, help="Ray cluster to use with --executor ray (default: start "
                                                          "a local Ray)"),
) -> None:
    """Run a pipeline: steps whose config, inputs and embodia version are unchanged reuse their artifact."""
    results = run_pipeline_file(pipeline_path(pipeline), set(force or []), dry_run, parallel, executor, ray_address)
    if results is not None and any(r.status in ("failed", "blocked") for r in results.values()):
        raise typer.Exit(1)


def run_pipeline_file(path: Path, force: set[str], dry_run: bool, parallel: int, executor: str = "local",
                      ray_address: str | None = None) -> dict[str, Any] | None:
    """Validate, plan or run a pipeline file and print what happened; returns the step results (None if dry)."""
    from embodia.platform.pipeline import load_pipeline
    from embodia.platform.runner import PipelineRunner
    from embodia.platform.store import open_store
    from embodia.platform.executors import make_executor

    pipeline = load_pipeline(path)
    store = open_store()
    try:
        if dry_run:
            runner = PipelineRunner(pipeline, store, force=force, parallel=parallel)
            show_plan(pipeline.name, runner.plan())
            return None
        runs_on = make_executor(executor, ray_address=ray_address)
        try:
            with StepProgress(pipeline) as progress:
                runner = PipelineRunner(pipeline, store, force=force, parallel=parallel, on_event=progress.event,
                                        executor=runs_on)
                results = runner.run()
        finally:
            runs_on.close()
        show_results(pipeline.name, results, store)
        return results
    finally:
        store.close()


class StepProgress:
    """One live line per step: spinner, status, and the stage's own progress while it runs."""

    def __init__(self, pipeline: Any) -> None:
        self.progress = Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"),
                                 TextColumn("{task.fields[status]}"), TimeElapsedColumn(), console=console,
                                 transient=True)
        self.tasks = {name: self.progress.add_task(f"{name} ({pipeline.steps[name].type})", status="waiting",
                                                   start=False) for name in pipeline.order}
        self.lock = threading.Lock()

    def __enter__(self) -> "StepProgress":
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def event(self, step: str, kind: str, payload: dict[str, Any]) -> None:
        """Runner callback (called from step threads)."""
        with self.lock:
            task = self.tasks[step]
            if kind == "start":
                self.progress.start_task(task)
                self.progress.update(task, status="running")
            elif kind == "progress":
                self.progress.update(task, status=_progress_text(payload))
            elif kind == "end":
                result = payload["result"]
                self.progress.update(task, status=result.status)
                self.progress.stop_task(task)
                style = STATUS_STYLE.get(result.status, "white")
                console.print(f"[{style}]{result.status:>7}[/] {step} ({result.type}) {result.seconds:6.1f} s  "
                              f"{_short(result.message)}", highlight=False, soft_wrap=True)


def _progress_text(event: dict[str, Any]) -> str:
    """A step's live status: its job, then the last line of the job's log (progress, metrics)."""
    if event.get("event") == "job":
        return f"job {event['job']} queued"
    if event.get("event") == "status":
        return f"job {event['job']}: {_short(str(event.get('message', '')), 100)}"
    return ""


def _short(text: str, limit: int = 160) -> str:
    first = text.splitlines()[0] if text else ""
    return first if len(first) <= limit else first[:limit - 1] + "…"


def show_plan(name: str, rows: list) -> None:
    """The dry-run table: each step, hit/miss, cache key and why."""
    table = Table(title=f"pipeline {name}: plan (nothing run)")
    for column in ("step", "type", "cache", "key", "detail"):
        table.add_column(column)
    for row in rows:
        style = STATUS_STYLE.get(row.status, "white")
        table.add_row(row.name, row.type, f"[{style}]{row.status}[/]", row.key[:12], row.detail)
    console.print(table)


def show_results(name: str, results: dict, store: Any) -> None:
    """Summary table, then where the registry, the deployed model's lineage and the report are."""
    table = Table(title=f"pipeline {name}")
    for column in ("step", "type", "status", "seconds", "result"):
        table.add_column(column)
    for result in results.values():
        style = STATUS_STYLE.get(result.status, "white")
        table.add_row(result.name, result.type, f"[{style}]{result.status}[/]", f"{result.seconds:.1f}",
                      _short(result.message, 100))
    console.print(table)
    for line in where_things_are(results, store):
        console.print(line, highlight=False, soft_wrap=True)


def where_things_are(results: dict, store: Any) -> list[str]:
    """Lines saying where the registry, the report, the registered model's lineage and the server are."""
    lines = [f"registry: {store.url}  (artifacts under {store.home / 'artifacts'})"]
    for result in results.values():
        output = result.output
        if output is None:
            continue
        if result.type == "evaluate" and (output.path / "report.html").is_file():
            lines.append(f"report ({result.name}): {output.path / 'report.html'}")
        if result.type == "register":
            lines.append(f"model: {output.ref}  lineage: embodia lineage {output.ref}")
        if result.type == "deploy":
            lines.append(f"deployment {output.summary['deployment']}: {output.ref}  (POST /act, GET /healthz); "
                         f"stop it with: embodia deployments stop {output.summary['deployment']}")
    return lines


def quickstart(
    force: Optional[list[str]] = typer.Option(None, "--force", help="rerun this step and its dependents"),
    out: Path = typer.Option(Path("out/quickstart"), file_okay=False,
                             help="where the summary and the dataset viewer page go"),
) -> None:
    """The whole loop on embedded defaults: `embodia run quickstart` (demos → BC → export → evaluate → gate →
    register → deploy), then a dataset viewer page and a summary."""
    results = run_pipeline_file(pipeline_path("quickstart"), set(force or []), False, 0)
    write_quickstart_extras(results, out)
    registered = [r.output.ref for r in results.values() if r.type == "register" and r.output is not None]
    if registered:
        from embodia.cli.platform import lineage_command

        console.rule(f"lineage of {registered[0]}")
        lineage_command(registered[0], as_json=False)
    if any(r.status in ("failed", "blocked") for r in results.values()):
        raise typer.Exit(1)


def write_quickstart_extras(results: dict, out: Path) -> None:
    """The dataset viewer page (outside the immutable dataset artifact) and summary.json under `out`."""
    from embodia.core.atomic import atomic_write_json
    from embodia.data.viewer import write_page

    out.mkdir(parents=True, exist_ok=True)
    summary = {name: {"type": r.type, "status": r.status, "seconds": round(r.seconds, 1), "message": r.message,
                      "artifact": str(r.output.path) if r.output else None} for name, r in results.items()}
    datasets = [r for r in results.values() if r.type == "generate" and r.output is not None]
    page = out / "dataset.html"
    if datasets:
        dataset = datasets[0]
        if not page.is_file() or _previous_artifact(out, dataset.name) != str(dataset.output.path):
            write_page(dataset.output.path, page)  # only when the dataset changed: the page takes a while
        console.print(f"dataset viewer: {page}", highlight=False, soft_wrap=True)
    atomic_write_json(out / "summary.json", summary)
    console.print(f"summary: {out / 'summary.json'}", highlight=False)


def _previous_artifact(out: Path, step: str) -> str | None:
    """The artifact a step had in the last quickstart summary under `out`, if any."""
    import json

    try:
        return json.loads((out / "summary.json").read_text())[step]["artifact"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


@deployments_app.command("list")
def deployments_list(json_output: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Deployments of this workspace: model, URL, status, restarts."""
    import json

    from embodia.platform import deploy
    from embodia.platform.store import open_store

    store = open_store()
    try:
        states = deploy.list_deployments(store.home)
        for state in states:
            deploy.record(store, state)
    finally:
        store.close()
    if json_output:
        print(json.dumps([deploy.describe(s) for s in states], indent=2))
        return
    table = Table(title="deployments")
    for column in ("name", "model", "url", "status", "restarts", "since"):
        table.add_column(column)
    for state in states:
        style = {"healthy": "green", "failed": "red", "stopped": "dim"}.get(state.status, "yellow")
        table.add_row(state.name, state.model_ref or state.model_sha256[:12], state.url,
                      f"[{style}]{state.status}[/]", str(state.restarts), state.started_at)
    console.print(table)


@deployments_app.command("stop")
def deployments_stop(name: str = typer.Argument(..., help="deployment name (see `embodia deployments list`)")) -> None:
    """Stop a deployment's server and its supervisor."""
    from embodia.platform import deploy
    from embodia.platform.store import open_store

    store = open_store()
    try:
        state = deploy.stop(store, name)
    finally:
        store.close()
    console.print(f"stopped deployment {name} ({state.model_ref or state.model_sha256[:12]}, was {state.url})")


def register(app: typer.Typer) -> None:
    """Add `run`, `quickstart` and the `deployments` group."""
    app.command("run")(run_command)
    app.command("quickstart")(quickstart)
    app.add_typer(deployments_app, name="deployments")
