"""`embodia regions | place | fleet`: the region catalog, placement of queued jobs, and the fleet simulator.

The workspace's catalog and policy are `<home>/regions/catalog.yaml` / `policy.yaml` when present, else the
shipped defaults; `--catalog` / `--policy` point at other files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from embodia.cli.options import MAX_ID

regions_app = typer.Typer(help="Regions: where jobs may run (catalog), and which are up.", no_args_is_help=True)
place_app = typer.Typer(help="Cost-optimal placement of queued jobs over regions, and why.", no_args_is_help=True)
fleet_app = typer.Typer(help="Replay a synthetic fleet workload through the real placement code.",
                        no_args_is_help=True)
console = Console(soft_wrap=True)
DEFAULT_SIM_OUT = Path("fleet-sim")

CATALOG = typer.Option(None, "--catalog", exists=True, dir_okay=False, help="region catalog YAML (default: the "
                       "workspace's regions/catalog.yaml, else the shipped one)")
POLICY = typer.Option(None, "--policy", exists=True, dir_okay=False, help="placement policy YAML (default: the "
                      "workspace's regions/policy.yaml, else the shipped one)")
METHOD = typer.Option("auto", help="auto (exact MILP up to 400 jobs, heuristic above), milp or heuristic")


def _open(catalog: Path | None, policy: Path | None):
    from embodia.platform.regions.scheduler import load_rules
    from embodia.platform.store import open_store

    store = open_store()
    return store, load_rules(store, catalog, policy)


def _check_method(method: str) -> str:
    from embodia.core.errors import UserError

    if method not in ("auto", "milp", "heuristic"):
        raise UserError(f"--method {method!r}: expected auto, milp or heuristic")
    return method


@regions_app.command("list")
def regions_list(catalog: Path = CATALOG, policy: Path = POLICY,
                 as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """List the regions: jurisdiction, status, pools with prices, egress price, and allowed kinds."""
    _, rules = _open(catalog, policy)
    if as_json:
        typer.echo(json.dumps(rules.catalog.model_dump(mode="json"), indent=2))
        return
    table = Table(title=f"{len(rules.catalog.regions)} regions (prices illustrative, USD)")
    for column in ("region", "jurisdiction", "status", "pools: units x $/unit-h", "egress $/GB", "allowed"):
        table.add_column(column, overflow="fold")
    for region in rules.catalog.regions:
        pools = ", ".join(f"{kind} {pool.count}x{pool.price_per_hour:g}" for kind, pool in region.pools().items())
        allowed = rules.policy.accelerators.allowed.get(region.name)
        status = "[green]up[/]" if region.status == "up" else "[red]down[/]"
        table.add_row(region.name, region.jurisdiction, status, pools, f"{region.egress_per_gb:g}",
                      ", ".join(allowed) if allowed is not None else "all")
    console.print(table)


@regions_app.command("down")
def regions_down(name: str = typer.Argument(..., help="region name (`embodia regions list`)"),
                 catalog: Path = CATALOG, policy: Path = POLICY, method: str = METHOD) -> None:
    """Mark a region down: its queued and checkpointed running jobs are re-placed elsewhere, or held with why."""
    from embodia.platform.regions.scheduler import fail_region

    store, rules = _open(catalog, policy)
    report = fail_region(store, rules, name, method=_check_method(method))
    console.print(f"region {name} is down: {report['moved']} jobs re-placed -> {report['placed']} placed, "
                  f"{report['waiting']} waiting, {report['held']} held (no legal region)")
    if report["running_without_checkpoint"]:
        for job_id, reason in report["not_moved"].items():
            console.print(f"job {job_id}: {reason}")


@regions_app.command("up")
def regions_up(name: str = typer.Argument(..., help="region name (`embodia regions list`)"),
               catalog: Path = CATALOG, policy: Path = POLICY, method: str = METHOD) -> None:
    """Mark a region up again and re-place the held and waiting jobs."""
    from embodia.platform.regions.scheduler import restore_region

    store, rules = _open(catalog, policy)
    report = restore_region(store, rules, name, method=_check_method(method))
    console.print(f"region {name} is up: {report['placed']} placed, {report['waiting']} waiting, "
                  f"{report['held']} held")


@place_app.command("run")
def place_run(catalog: Path = CATALOG, policy: Path = POLICY, method: str = METHOD,
              project: str = typer.Option(None, help="only this project's jobs")) -> None:
    """Place every queued (and held) job as one batch; each decision and its reasons go on the job's row."""
    from embodia.platform.regions.scheduler import place_queued

    store, rules = _open(catalog, policy)
    decision = place_queued(store, rules, method=_check_method(method), project=project)
    if decision is None:
        console.print("no queued jobs to place")
        return
    counts = decision.counts()
    console.print(f"{len(decision.problem.batch)} jobs ({decision.method}, {decision.solve_s * 1000:.1f} ms): "
                  f"{counts['placed']} placed, {counts['waiting']} waiting, {counts['held']} held; "
                  f"cost ${decision.money.sum():,.2f}")
    table = Table(title="placements")
    for column in ("job", "type", "project", "decision", "region", "kind", "cost $", "reason"):
        table.add_column(column, overflow="fold")
    for j in range(min(len(decision.problem.batch), 50)):
        info = decision.explain(j)
        table.add_row(str(info["job"]), info["type"], info["project"], info["decision"], info["region"] or "",
                      info["kind"] or "", f"{info['cost_usd']['total']:.2f}" if "cost_usd" in info else "",
                      info.get("reason", ""))
    console.print(table)


@place_app.command("explain")
def place_explain(job_id: int = typer.Argument(..., min=1, max=MAX_ID, help="job id"),
                  catalog: Path = CATALOG, policy: Path = POLICY,
                  as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Why a job was placed where it was: the decision, its cost, and each rejected region with its reason."""
    from embodia.platform.regions.scheduler import explain_job

    store, rules = _open(catalog, policy)
    info = explain_job(store, rules, job_id)
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    _print_explanation(info)


def _print_explanation(info: dict[str, Any]) -> None:
    data = info.get("data", {})
    console.print(f"job {info['job']} [bold]{info['type']}[/] ({info['project']}): needs "
                  f"{info['needs']['units']:g} x {'/'.join(info['needs']['kinds'])} for ~{info['needs']['hours']:g} h;"
                  f" data {data.get('gb', 0):.2f} GB in {data.get('region')}, residency "
                  f"{', '.join(data.get('jurisdictions') or []) or 'none'}", highlight=False)
    if info.get("region"):
        cost = info["cost_usd"]
        console.print(f"[green]placed[/] in [bold]{info['region']}[/] on {info['kind']} ({info['method']}): "
                      f"${cost['total']:.2f} = compute ${cost['compute']:.2f} + egress ${cost['egress']:.2f} + "
                      f"queueing ${cost['queue']:.2f}", highlight=False)
    else:
        console.print(f"[red]{info['decision']}[/]: {info.get('reason', '')}", highlight=False)
    if info.get("note"):
        console.print(f"[dim]{info['note']}[/]")
    table = Table(title="rejected regions")
    table.add_column("region")
    table.add_column("why", overflow="fold")
    for region, why in info.get("rejected", {}).items():
        table.add_row(region, why)
    console.print(table)


@fleet_app.command("simulate")
def fleet_simulate(jobs: int = typer.Option(100_000, min=1, max=10_000_000, help="jobs in the trace"),
                   catalog: Path = CATALOG, policy: Path = POLICY,
                   jobs_per_window: int = typer.Option(100, min=1, max=100_000, help="arrivals per placement window"),
                   window_h: float = typer.Option(0.25, min=0.01, max=24.0, help="placement window, hours"),
                   outages: int = typer.Option(6, min=0, max=10_000, help="region outages in the trace"),
                   check_windows: int = typer.Option(20, min=0, max=100_000,
                                                     help="windows also solved exactly, for the gap to the optimum"),
                   method: str = typer.Option("heuristic", help="placement per window: heuristic, milp or auto"),
                   seed: int = typer.Option(0, min=0, max=2**32 - 1, help="trace seed"),
                   out: Path = typer.Option(DEFAULT_SIM_OUT, file_okay=False,
                                            help="directory for fleet.json and fleet.png")) -> None:
    """Replay a synthetic trace (job mix, tenants, residency-tagged datasets, outages) through real placement."""
    from embodia.cli.progress import RichReporter
    from embodia.core.atomic import atomic_write_json
    from embodia.platform.regions.catalog import load_catalog
    from embodia.platform.regions.fleet import SimConfig, plot, simulate
    from embodia.platform.regions.policy import load_policy

    config = SimConfig(jobs=jobs, jobs_per_window=jobs_per_window, window_h=window_h, outages=outages,
                       check_windows=check_windows, method=_check_method(method), seed=seed)
    config.check()
    rules_catalog = load_catalog(catalog)
    rules_policy = load_policy(policy, rules_catalog)
    result = simulate(rules_catalog, rules_policy, config, reporter=RichReporter())
    summary = result.summary()
    atomic_write_json(out / "fleet.json", {**summary, "violation_list": result.violations[:100]})
    png = plot(result, out / "fleet.png")
    _print_summary(summary, out / "fleet.json", png)
    if result.violations:
        raise typer.Exit(1)


def _print_summary(summary: dict[str, Any], json_path: Path, png: Path) -> None:
    colour = "green" if summary["violations"] == 0 else "red"
    console.print(f"{summary['jobs']:,} jobs in {summary['windows']:,} windows ({summary['method']}): "
                  f"[{colour}]{summary['violations']} violations[/], {summary['placed']:,} placed, "
                  f"{summary['held_at_end']:,} held and {summary['waiting_at_end']:,} waiting at the end; "
                  f"cost ${summary['cost_usd']:,.2f}; placement {summary['placement_s']:.2f} s", highlight=False)
    gap = summary["vs_optimum"]
    if gap:
        console.print(f"vs exact MILP on {gap['windows']} windows ({gap['sampled']} on a sample of their backlog): "
                      f"{100 * gap['gap']:.3f} % above the optimum "
                      f"(worst window {100 * gap['worst_window_gap']:.3f} %; target 1 %)", highlight=False)
    queue = summary["queue_h"]
    console.print(f"queue time h: mean {queue['mean']:.3f}, p50 {queue['p50']:.3f}, p95 {queue['p95']:.3f}, "
                  f"max {queue['max']:.2f}; after outages {summary['resumed_from_checkpoint']} resumed from a "
                  f"checkpoint, {summary['restarted_after_outage']} restarted", highlight=False)
    console.print("utilization: " + ", ".join(f"{k} {100 * v:.1f} %" for k, v in summary["utilization"].items()),
                  highlight=False)
    console.print(f"wrote {json_path} and {png}")


def register(app: typer.Typer) -> None:
    """Mount `regions`, `place` and `fleet` on the main app."""
    app.add_typer(regions_app, name="regions")
    app.add_typer(place_app, name="place")
    app.add_typer(fleet_app, name="fleet")
