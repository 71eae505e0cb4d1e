"""`embodia eval ...`: run scenario suites, compare two policies as a CI gate, validate and list suites."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from embodia.cli.options import MAX_EPISODES

# the gate's own checks (embodia.evaluate.compare) refuse the open ends: alpha in (0, 1), a success margin < 1
MIN_ALPHA, MAX_ALPHA = 1e-9, 0.5
MAX_MARGIN = 0.999

eval_app = typer.Typer(help="Evaluate policies in simulation: scenario suites, CIs, reports, regression gate.",
                       no_args_is_help=True)
console = Console()

SUITE_HELP = "suite YAML path or a built-in suite name (see `embodia eval suites`)"


def _default_out(kind: str, suite_name: str) -> Path:
    return Path("runs") / "eval" / f"{suite_name}__{kind}__{time.strftime('%Y%m%d-%H%M%S')}"


def _policy_inputs(name: str, spec: str | None) -> tuple[dict[str, Path], str | None]:
    """A policy that is a file/directory travels as a hashed stage input; any other spec stays in the config."""
    if spec is not None and Path(spec).exists():
        return {name: Path(spec)}, None
    return {}, spec


def _with_backend(suite, backend: str | None):
    """The suite with `--backend` applied (the suite file's own backend when not given)."""
    return suite if backend is None else suite.model_copy(update={"backend": backend})


def _check_published(manifest, out: Path) -> None:
    if manifest.status != "complete":
        console.print(f"[yellow]{manifest.stage} {manifest.status}[/]; nothing was published to {out}")
        raise typer.Exit(130)


@eval_app.command("run")
def run(
    suite: str = typer.Argument(..., help=SUITE_HELP),
    policy: Optional[str] = typer.Option(None, "--policy", "-p",
                                         help="checkpoint dir, .onnx, expert:<task>, random, module:function, http://host:port"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", file_okay=False,
                                       help="output directory (default runs/eval/<suite>__run__<time>)"),
    videos: bool = typer.Option(True, "--videos/--no-videos", help="render best/worst episode per scenario"),
    episodes: Optional[int] = typer.Option(None, min=1, max=MAX_EPISODES, help="override episodes per scenario"),
    scenario: Optional[list[str]] = typer.Option(None, "--scenario", "-s", help="run only these scenarios (repeatable)"),
    backend: Optional[str] = typer.Option(None, help="physics backend (cpu, mjx, warp); overrides the suite's"),
) -> None:
    """Evaluate one policy on every scenario of a suite; writes results.json, report.html and manifest.json."""
    from embodia.cli.progress import RichReporter
    from embodia.evaluate import Results, load_suite
    from embodia.evaluate import run as evaluate

    loaded = _with_backend(load_suite(suite), backend)
    out = out or _default_out("run", loaded.name)
    inputs, spec = _policy_inputs("policy", policy)
    config = {"suite": loaded.model_dump(mode="json"), "policy": spec, "videos": videos, "episodes": episodes,
              "scenarios": scenario}
    _check_published(evaluate(config, out, inputs=inputs, reporter=RichReporter()), out)
    results = Results.load(out)
    table = Table(title=f"{loaded.name} · {results.policy}")
    for column in ("scenario", "episodes", "success [95 % CI]", "return [95 % CI]", "failure modes"):
        table.add_column(column)
    for item in results.scenarios:
        s = item.summary()
        low, high = s["success_ci95"]
        table.add_row(item.name, str(s["episodes"]), f"{s['success_rate']:.1%} [{low:.1%}, {high:.1%}]",
                      f"{s['return_mean']:.1f} [{s['return_ci95'][0]:.1f}, {s['return_ci95'][1]:.1f}]",
                      ", ".join(f"{k}: {v}" for k, v in s["failure_modes"].items()) or "-")
    console.print(table)
    console.print(f"report: [bold]{out / 'report.html'}[/]  results: {out / 'results.json'}")


@eval_app.command("compare")
def compare_command(
    suite: str = typer.Argument(..., help=SUITE_HELP),
    baseline: str = typer.Option(..., "--baseline", "-a", help="policy A (the deployed one), or a stored eval run"),
    candidate: str = typer.Option(..., "--candidate", "-b", help="policy B (the one to deploy), or a stored eval run"),
    margin: float = typer.Option(0.05, min=0.0, max=MAX_MARGIN, help="largest drop tolerated: success-rate points in [0, 1) (0.05 = 5 %), "
                                            "or fraction of baseline return when the suite's metric is return"),
    alpha: float = typer.Option(0.05, min=MIN_ALPHA, max=MAX_ALPHA, help="significance level of the paired tests"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", file_okay=False, help="output directory"),
    videos: bool = typer.Option(False, "--videos/--no-videos", help="render best/worst episodes of both policies"),
    episodes: Optional[int] = typer.Option(None, min=1, max=MAX_EPISODES, help="override episodes per scenario"),
    scenario: Optional[list[str]] = typer.Option(None, "--scenario", "-s", help="compare only these scenarios"),
    backend: Optional[str] = typer.Option(None, help="physics backend (cpu, mjx, warp); overrides the suite's"),
) -> None:
    """Regression gate: A vs B on identical seeds; exit 0 unless B is worse (exit 1); bad options exit 2."""
    from embodia.cli.progress import RichReporter
    from embodia.evaluate import compare as gate
    from embodia.evaluate.results import COMPARISON_FILE
    from embodia.evaluate import load_suite

    loaded = _with_backend(load_suite(suite), backend)
    out = out or _default_out("compare", loaded.name)
    inputs_a, spec_a = _policy_inputs("a", baseline)
    inputs_b, spec_b = _policy_inputs("b", candidate)
    config = {"suite": loaded.model_dump(mode="json"), "baseline": spec_a, "candidate": spec_b, "margin": margin,
              "alpha": alpha, "videos": videos, "episodes": episodes, "scenarios": scenario}
    manifest = gate.run(config, out, inputs={**inputs_a, **inputs_b}, reporter=RichReporter())
    _check_published(manifest, out)
    comparison = json.loads((out / COMPARISON_FILE).read_text())
    table = Table(title=f"{loaded.name}: A={comparison['baseline']}  B={comparison['candidate']}")
    for column in ("scenario", "A success", "B success", "Δ [95 % CI]", "p (Holm)", "A return", "B return", "verdict"):
        table.add_column(column)
    for item in [*comparison["scenarios"], comparison["overall"]]:
        s, r = item["success"], item["returns"]
        colour = {"worse": "red", "better": "green"}.get(item["verdict"], "white")
        p = s["p_adjusted"] if comparison["metric"] == "success" else r["p_adjusted"]
        table.add_row(item["name"], f"{s['baseline']:.1%}", f"{s['candidate']:.1%}",
                      f"{s['difference']:+.1%} [{_pct(s['difference_low'])}, {_pct(s['difference_high'])}]",
                      f"{p:.3g}", f"{r['baseline']:.1f}", f"{r['candidate']:.1f}", f"[{colour}]{item['verdict']}[/]")
    console.print(table)
    console.print(f"gate: [bold]{comparison['verdict']}[/] (metric {comparison['metric']}, margin {margin}, "
                  f"alpha {alpha}) · report: {out / 'report.html'}")
    raise typer.Exit(1 if manifest.summary["gate_failed"] else 0)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.1%}"


@eval_app.command("validate")
def validate(suite: str = typer.Argument(..., help=SUITE_HELP)) -> None:
    """Check a suite: YAML fields, task name, and every body/joint/light/camera it names (the video's too)."""
    from embodia.evaluate import load_suite
    from embodia.evaluate.conditions import ScenarioConditions, check_video_camera
    from embodia.evaluate.runner import make_env

    loaded = load_suite(suite)
    for scenario in loaded.scenarios:
        env = make_env(loaded, scenario, 1)
        try:
            ScenarioConditions(scenario, env)
            check_video_camera(loaded.video.camera, env.sim.model, loaded.name)
        finally:
            env.close()
    episodes = sum(len(loaded.episode_seeds(s)) for s in loaded.scenarios)
    console.print(f"[green]ok[/] {loaded.name}: task {loaded.task}, {len(loaded.scenarios)} scenarios, {episodes} episodes")


@eval_app.command("suites")
def suites() -> None:
    """List the suites shipped with embodia."""
    from embodia.evaluate import load_suite
    from embodia.evaluate.suite import builtin_suites

    table = Table(title="built-in suites")
    for column in ("name", "task", "scenarios", "episodes each"):
        table.add_column(column)
    for name, path in sorted(builtin_suites().items()):
        loaded = load_suite(path)
        table.add_row(name, loaded.task, ", ".join(s.name for s in loaded.scenarios), str(loaded.episodes))
    console.print(table)
