"""Fleet simulator: replay a synthetic trace of jobs through the real placement code and measure it.

The trace has mixed job types, tenants, datasets with residency tags (each stored in a region its tag allows,
or at home), and region outages. Time advances in windows: each window's arrivals plus the jobs still waiting
are placed as one batch (`placement.place`, the code `embodia place run` uses) on what is free; placed jobs
start at once and hold their units until they end. When a region goes down, its running jobs are re-placed
(checkpointed ones keep their progress, others start over) and nothing is placed there until it is back.
Every placement is checked afterwards by an independent, scalar re-reading of the rules (`violations`); on a
sample of windows the exact MILP is solved too, to report the heuristic's cost against the optimum.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from embodia.core.errors import UserError
from embodia.core.reporter import NullReporter, Reporter
from embodia.platform.regions.catalog import CPU, Catalog
from embodia.platform.regions.placement import (
    HELD,
    PLACED,
    WAIT_BUDGET,
    WAIT_CAPACITY,
    WAIT_QUOTA,
    Decision,
    FleetState,
    JobBatch,
    JobSpec,
    Method,
    Problem,
    build_problem,
    job_batch,
    place,
    relative_gap,
)
from embodia.platform.regions.policy import PlacementPolicy, Tenant

TYPE_MIX = {"train": 0.15, "generate": 0.35, "evaluate": 0.35, "export": 0.15}
TENANTS = ("lab-a", "lab-b", "lab-c", "startup", "student")
# tenants the simulator caps when the policy says nothing of them, so budgets and quotas are exercised
SIM_TENANT_CAPS = {"startup": Tenant(budget_usd=2_000.0), "student": Tenant(max_accelerators=8)}
CHECKPOINTED_TYPES = ("train",)


@dataclass
class SimConfig:
    """One simulation: how many jobs, how they arrive, how often regions fail, and how to place."""

    jobs: int = 100_000
    jobs_per_window: int = 100
    window_h: float = 0.25
    outages: int = 6
    outage_h: tuple[float, float] = (1.0, 6.0)
    datasets: int = 300
    method: Method = "heuristic"
    exact_max_jobs: int = 400
    check_windows: int = 20
    seed: int = 0

    def check(self) -> None:
        """Every number in range, with a one-line error naming the option."""
        for name, low, high in (("jobs", 1, 10_000_000), ("jobs_per_window", 1, 100_000), ("outages", 0, 10_000),
                                ("datasets", 1, 1_000_000), ("check_windows", 0, 100_000),
                                ("exact_max_jobs", 1, 100_000)):
            value = getattr(self, name)
            if not isinstance(value, int) or not low <= value <= high:
                raise UserError(f"--{name.replace('_', '-')}={value!r}: expected an integer from {low} to {high}")
        if not (np.isfinite(self.window_h) and 0 < self.window_h <= 24):
            raise UserError(f"--window-h={self.window_h!r}: expected a number of hours in (0, 24]")
        if self.method not in ("auto", "milp", "heuristic"):
            raise UserError(f"--method={self.method!r}: expected auto, milp or heuristic")


@dataclass
class Trace:
    """The synthetic workload: every job (as a JobBatch), its arrival time and true run time, and outages."""

    batch: JobBatch
    arrival_h: np.ndarray  # (N,)
    run_h: np.ndarray  # (N,) true duration (the batch's hours are the policy's estimate)
    checkpointed: np.ndarray  # (N,) bool
    outages: list[tuple[str, float, float]]  # (region, start_h, end_h)


def sim_policy(policy: PlacementPolicy) -> PlacementPolicy:
    """The policy with caps for the simulator's capped tenants added where the policy has none of its own."""
    tenants = {**SIM_TENANT_CAPS, **policy.tenants}
    return policy.model_copy(update={"tenants": tenants})


def _legal_home(catalog: Catalog, policy: PlacementPolicy, tags: frozenset[str], rng: np.random.Generator) -> str:
    """A region a dataset under `tags` may be stored in (home when no region allows it)."""
    allowed = np.flatnonzero(policy.residency_mask(catalog, tags))
    return catalog.names[int(rng.choice(allowed))] if len(allowed) else catalog.home


def make_trace(catalog: Catalog, policy: PlacementPolicy, config: SimConfig) -> Trace:
    """Draw the workload: Poisson-ish arrivals, a type mix, datasets with residency tags, lognormal run times."""
    rng = np.random.default_rng(config.seed)
    n = config.jobs
    tag_choices = [frozenset(), frozenset(), frozenset(), frozenset({"EU"}), frozenset({"BR"}), frozenset({"KR"}),
                   frozenset({"JP"}), frozenset({"MX"}), frozenset({"EU", "JP"}), frozenset({"HOME"})]
    tag_weights = np.array([30, 10, 10, 15, 8, 6, 6, 4, 1, 0.5])
    dataset_tags = [tag_choices[i] for i in rng.choice(len(tag_choices), config.datasets,
                                                       p=tag_weights / tag_weights.sum())]
    dataset_region = [_legal_home(catalog, policy, tags, rng) if tags else
                      catalog.names[int(rng.integers(len(catalog.names)))] for tags in dataset_tags]
    dataset_gb = rng.lognormal(1.5, 1.2, config.datasets).clip(0.01, 2_000)
    types = list(TYPE_MIX)
    job_type = rng.choice(len(types), n, p=np.array(list(TYPE_MIX.values())))
    dataset = rng.integers(config.datasets, size=n)
    project = rng.choice(len(TENANTS), n, p=[0.3, 0.25, 0.2, 0.15, 0.1])
    priority = rng.choice(3, n, p=[0.7, 0.2, 0.1])
    specs = [JobSpec(id=i, type=types[job_type[i]], project=TENANTS[project[i]], jurisdictions=dataset_tags[dataset[i]],
                     data_gb=float(dataset_gb[dataset[i]]), data_region=dataset_region[dataset[i]],
                     priority=int(priority[i])) for i in range(n)]
    batch = job_batch(specs, catalog, policy)
    windows = max(1, int(np.ceil(n / config.jobs_per_window)))
    arrival_h = np.sort(rng.uniform(0, windows * config.window_h, n))
    run_h = batch.hours * rng.lognormal(0.0, 0.4, n)
    outages = _outages(catalog, config, windows * config.window_h, rng)
    return Trace(batch=batch, arrival_h=arrival_h, run_h=run_h,
                 checkpointed=np.isin(np.array(types)[job_type], CHECKPOINTED_TYPES), outages=outages)


def _outages(catalog: Catalog, config: SimConfig, horizon_h: float,
             rng: np.random.Generator) -> list[tuple[str, float, float]]:
    remote = [name for name in catalog.names if name != catalog.home]
    outages = []
    for _ in range(config.outages if remote else 0):
        start = float(rng.uniform(0, horizon_h))
        outages.append((remote[int(rng.integers(len(remote)))], start, start + float(rng.uniform(*config.outage_h))))
    return sorted(outages, key=lambda outage: outage[1])


# ----------------------------------------------------------------------------------------------- checking


def violations(catalog: Catalog, policy: PlacementPolicy, batch: JobBatch, index: np.ndarray, regions: np.ndarray,
               kinds: np.ndarray, up: dict[str, bool]) -> list[str]:
    """Each placement that breaks a hard rule, re-read from the YAML rules one job at a time (independent of the
    vectorized masks placement used): the region is up, holds the job's data's jurisdictions, has the kind,
    the kind is one the job type needs and the region may run."""
    found = []
    for row, r, k in zip(index.tolist(), regions.tolist(), kinds.tolist()):
        region, kind = catalog.regions[r], catalog.kinds[k]
        job_type = batch.types[batch.type_index[row]]
        job = int(batch.ids[row])
        if not up[region.name]:
            found.append(f"job {job}: placed in {region.name}, which is down")
        for tag in batch.residency_sets[batch.residency_index[row]]:
            rule = policy.residency.get(tag)
            ok = (region.name in rule.regions or region.jurisdiction in rule.jurisdictions) if rule \
                else region.jurisdiction == tag
            if not ok:
                found.append(f"job {job}: data under {tag} placed in {region.name} ({region.jurisdiction})")
        if kind not in policy.needs(job_type).kinds:
            found.append(f"job {job}: {job_type} placed on {kind}")
        allowed = policy.accelerators.allowed.get(region.name)
        if allowed is not None and kind not in allowed:
            found.append(f"job {job}: {kind} in {region.name} breaks the export rules")
        if kind not in region.pools():
            found.append(f"job {job}: {region.name} has no {kind}")
    return found


# ----------------------------------------------------------------------------------------------- simulation


@dataclass
class SimResult:
    """What a simulation measured (JSON-ready via `summary`)."""

    config: SimConfig
    catalog: Catalog
    placed: int = 0
    held_at_end: int = 0
    waiting_at_end: int = 0
    never_started: int = 0
    violations: list[str] = field(default_factory=list)
    restarts: int = 0
    resumed: int = 0
    cost_usd: float = 0.0
    queue_h: np.ndarray = field(default_factory=lambda: np.zeros(0))
    busy_unit_h: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (R, K)
    horizon_h: float = 0.0
    checked: list[dict[str, float]] = field(default_factory=list)
    timeline: list[dict[str, float]] = field(default_factory=list)
    wait_reasons: dict[str, int] = field(default_factory=dict)
    solve_s: float = 0.0
    windows: int = 0

    def utilization(self) -> dict[str, float]:
        """Per region: busy unit-hours over (units x horizon), all pools weighted by price (what money saw)."""
        arrays = self.catalog.arrays()
        price = np.where(np.isfinite(arrays.price), arrays.price, 0.0)
        capacity = arrays.count * self.horizon_h
        weights = price * capacity
        busy = (self.busy_unit_h * price).sum(axis=1)
        total = weights.sum(axis=1)
        return {name: float(busy[r] / total[r]) if total[r] > 0 else 0.0 for r, name in enumerate(arrays.names)}

    def gap(self) -> dict[str, float] | None:
        """The heuristic's cost over the exact optimum across the checked windows."""
        if not self.checked:
            return None
        ours = sum(c["ours"] for c in self.checked)
        best = sum(c["optimum"] for c in self.checked)
        worst = max(c["gap"] for c in self.checked)
        return {"windows": len(self.checked), "sampled": int(sum(c.get("sampled", 0) for c in self.checked)),
                "ours": ours, "optimum": best,
                "gap": (ours - best) / best if best else 0.0, "worst_window_gap": worst}

    def summary(self) -> dict[str, Any]:
        """Headline figures as plain data."""
        queue_h = self.queue_h if len(self.queue_h) else np.zeros(1)
        return {"jobs": self.config.jobs, "windows": self.windows, "placed": self.placed,
                "held_at_end": self.held_at_end, "waiting_at_end": self.waiting_at_end,
                "never_started": self.never_started,
                "violations": len(self.violations), "cost_usd": round(self.cost_usd, 2),
                "restarted_after_outage": self.restarts, "resumed_from_checkpoint": self.resumed,
                "queue_h": {"mean": float(queue_h.mean()), "p50": float(np.percentile(queue_h, 50)),
                            "p95": float(np.percentile(queue_h, 95)), "max": float(queue_h.max())},
                "wait_reasons": self.wait_reasons, "utilization": self.utilization(), "vs_optimum": self.gap(),
                "placement_s": round(self.solve_s, 3), "method": self.config.method,
                "outages": [list(o) for o in self.trace_outages]}

    trace_outages: list[tuple[str, float, float]] = field(default_factory=list)


class _Running:
    """Jobs holding units: row in the trace, region, kind, units, end time (arrays grown per window)."""

    def __init__(self) -> None:
        self.row = np.zeros(0, dtype=np.int64)
        self.region = np.zeros(0, dtype=np.int64)
        self.kind = np.zeros(0, dtype=np.int64)
        self.units = np.zeros(0)
        self.start_h = np.zeros(0)
        self.end_h = np.zeros(0)

    def add(self, row, region, kind, units, start_h, end_h) -> None:
        self.row = np.r_[self.row, row]
        self.region = np.r_[self.region, region]
        self.kind = np.r_[self.kind, kind]
        self.units = np.r_[self.units, units]
        self.start_h = np.r_[self.start_h, start_h]
        self.end_h = np.r_[self.end_h, end_h]

    def keep(self, mask: np.ndarray) -> None:
        for name in ("row", "region", "kind", "units", "start_h", "end_h"):
            setattr(self, name, getattr(self, name)[mask])


def simulate(catalog: Catalog, policy: PlacementPolicy, config: SimConfig | None = None,
             reporter: Reporter | None = None) -> SimResult:
    """Run the trace window by window through `placement.place`; see the module docstring."""
    config = config or SimConfig()
    config.check()
    reporter = reporter or NullReporter()
    policy = sim_policy(policy)
    policy.check_against(catalog)
    trace = make_trace(catalog, policy, config)
    arrays = catalog.arrays()
    R, K = arrays.count.shape
    windows = max(1, int(np.ceil(config.jobs / config.jobs_per_window)))
    result = SimResult(config=config, catalog=catalog, busy_unit_h=np.zeros((R, K)), trace_outages=trace.outages)
    running = _Running()
    remaining_h = trace.run_h.copy()
    pending = np.zeros(0, dtype=np.int64)
    spent: dict[str, float] = {}
    next_arrival = 0
    check_every = -(-windows // config.check_windows) if config.check_windows else 0
    first_start = np.full(config.jobs, np.nan)
    reporter.start("fleet simulate", total=windows, unit="windows")
    for w in range(windows):
        now = (w + 1) * config.window_h  # decisions at the end of each window, over what arrived in it
        up = _up_at(catalog, trace.outages, now)
        pending = np.r_[pending, _fail_running(running, up, catalog, trace, remaining_h, now, result)]
        _finish(running, now, result)
        arrived = np.searchsorted(trace.arrival_h, now, side="right")
        pending = np.r_[pending, np.arange(next_arrival, arrived)]
        next_arrival = arrived
        if len(pending):
            pending = _place_window(catalog, policy, config, trace, pending, running, up, spent, now, remaining_h,
                                    first_start, result, check=bool(check_every) and w % check_every == 0)
        result.timeline.append({"t_h": now, "pending": float(len(pending)), "running": float(len(running.row)),
                                "regions_down": float(sum(not v for v in up.values()))})
        reporter.update(w + 1, message=f"{result.placed:,} placed, {len(pending):,} waiting")
    reporter.finish()
    end = windows * config.window_h
    _finish(running, end + 1e9, result, clip_h=end)
    result.horizon_h = end
    result.windows = windows
    done = ~np.isnan(first_start)
    result.never_started = int((~done).sum())
    result.queue_h = first_start[done] - trace.arrival_h[done]
    outcome_at_end = _final_outcomes(catalog, policy, trace, pending, up, spent)
    result.held_at_end = int((outcome_at_end == HELD).sum())
    result.waiting_at_end = int(len(pending) - result.held_at_end)
    return result


def _up_at(catalog: Catalog, outages: list[tuple[str, float, float]], now: float) -> dict[str, bool]:
    up = {region.name: region.status == "up" for region in catalog.regions}
    for name, start, end in outages:
        if start <= now < end:
            up[name] = False
    return up


def _fail_running(running: _Running, up: dict[str, bool], catalog: Catalog, trace: Trace, remaining_h: np.ndarray,
                  now: float, result: SimResult) -> np.ndarray:
    """Jobs running in a region that just went down: back to pending (checkpointed ones keep their progress)."""
    down = np.array([not up[name] for name in catalog.names])
    lost = down[running.region] if len(running.row) else np.zeros(0, dtype=bool)
    if not lost.any():
        return np.zeros(0, dtype=np.int64)
    rows = running.row[lost]
    ran_h = now - running.start_h[lost]
    result.busy_unit_h += _busy(running, lost, ran_h, result.busy_unit_h.shape)
    keeps = trace.checkpointed[rows]
    remaining_h[rows[keeps]] = np.maximum(remaining_h[rows[keeps]] - ran_h[keeps], 1e-3)
    remaining_h[rows[~keeps]] = trace.run_h[rows[~keeps]]
    result.resumed += int(keeps.sum())
    result.restarts += int((~keeps).sum())
    running.keep(~lost)
    return rows


def _busy(running: _Running, mask: np.ndarray, hours: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    busy = np.zeros(shape)
    np.add.at(busy, (running.region[mask], running.kind[mask]), running.units[mask] * hours)
    return busy


def _finish(running: _Running, now: float, result: SimResult, clip_h: float | None = None) -> None:
    done = running.end_h <= now
    if not done.any():
        return
    end = running.end_h[done] if clip_h is None else np.minimum(running.end_h[done], clip_h)
    result.busy_unit_h += _busy(running, done, end - running.start_h[done], result.busy_unit_h.shape)
    running.keep(~done)


def _state(catalog: Catalog, running: _Running, spent: dict[str, float], trace: Trace,
           config: SimConfig) -> FleetState:
    """Free units now, expected queueing from each pool's utilization (M/M/1-like), spend and quota use."""
    arrays = catalog.arrays()
    used = np.zeros(arrays.count.shape)
    np.add.at(used, (running.region, running.kind), running.units)
    free = np.maximum(arrays.count - used, 0)
    util = np.where(arrays.count > 0, used / np.maximum(arrays.count, 1), 0).clip(0, 0.95)
    wait_h = config.window_h * util / (1 - util)
    held: dict[str, float] = {}
    accelerators = running.kind != 0
    for p, project in enumerate(trace.batch.projects):
        mine = accelerators & (trace.batch.project_index[running.row] == p)
        held[project] = float(running.units[mine].sum())
    return FleetState(free=free.astype(float), wait_h=wait_h, spent_usd=dict(spent), accelerators_held=held)


def _place_window(catalog: Catalog, policy: PlacementPolicy, config: SimConfig, trace: Trace, pending: np.ndarray,
                  running: _Running, up: dict[str, bool], spent: dict[str, float], now: float,
                  remaining_h: np.ndarray, first_start: np.ndarray, result: SimResult, *, check: bool) -> np.ndarray:
    """Place the pending jobs as one batch; start the placed ones; return those still pending."""
    window_catalog = catalog.with_status({name: "up" if ok else "down" for name, ok in up.items()})
    batch = trace.batch.take(pending)
    batch.hours = remaining_h[pending]
    state = _state(catalog, running, spent, trace, config)
    problem = build_problem(batch, window_catalog, policy, state)
    started = time.perf_counter()
    decision = place(problem, method=config.method, exact_max_jobs=config.exact_max_jobs)
    result.solve_s += time.perf_counter() - started
    if check and decision.method != "milp":
        result.checked.append(_check_against_optimum(problem, decision, batch, window_catalog, policy, state,
                                                     config, now))
    placed = decision.assignment.outcome == PLACED
    rows = pending[placed]
    region, kind = decision.region[placed], decision.kind[placed]
    result.violations += violations(window_catalog, policy, trace.batch, rows, region, kind, up)
    result.violations += _capacity_violations(catalog, state, region, kind, batch.units[placed], policy,
                                              trace, rows, decision.money[placed])
    for p, project in enumerate(batch.projects):
        mine = batch.project_index[placed] == p
        spent[project] = spent.get(project, 0.0) + float(decision.money[placed][mine].sum())
    result.cost_usd += float(decision.money[placed].sum())
    running.add(rows, region, kind, batch.units[placed], np.full(len(rows), now), now + remaining_h[rows])
    fresh = np.isnan(first_start[rows])
    first_start[rows[fresh]] = now
    result.placed += int(fresh.sum())
    for code, name in ((WAIT_CAPACITY, "capacity"), (WAIT_BUDGET, "budget"), (WAIT_QUOTA, "quota"),
                       (HELD, "held")):
        result.wait_reasons[name] = result.wait_reasons.get(name, 0) + int((decision.assignment.outcome == code).sum())
    return pending[~placed]


def _check_against_optimum(problem: Problem, decision: Decision, batch: JobBatch, window_catalog: Catalog,
                           policy: PlacementPolicy, state: FleetState, config: SimConfig,
                           now: float) -> dict[str, float]:
    """The heuristic's objective against the exact MILP's on this window; when the backlog is too large to solve
    exactly, on a seeded random sample of `exact_max_jobs` of its jobs (same free units, spend and quotas)."""
    sampled = len(batch) > config.exact_max_jobs
    if sampled:
        rng = np.random.default_rng([config.seed, round(now * 1000)])
        rows = np.sort(rng.choice(len(batch), config.exact_max_jobs, replace=False))
        problem = build_problem(batch.take(rows), window_catalog, policy, state)
        decision = place(problem, method="heuristic")
    exact = place(problem, method="milp")
    return {"t_h": now, "jobs": float(len(problem.batch)), "sampled": float(sampled), "ours": decision.objective,
            "optimum": exact.objective, "gap": relative_gap(decision, exact)}


def _capacity_violations(catalog: Catalog, state: FleetState, region: np.ndarray, kind: np.ndarray,
                         units: np.ndarray, policy: PlacementPolicy, trace: Trace, rows: np.ndarray,
                         money: np.ndarray) -> list[str]:
    """Pools over capacity, tenants over budget or accelerator quota after this window's placements."""
    found = []
    used = np.zeros(state.free.shape)
    np.add.at(used, (region, kind), units)
    for r, k in zip(*np.nonzero(used > state.free + 1e-9)):
        found.append(f"{catalog.names[r]}/{catalog.kinds[k]}: {used[r, k]:g} units placed, {state.free[r, k]:g} free")
    projects = trace.batch.project_index[rows]
    for p, project in enumerate(trace.batch.projects):
        tenant = policy.tenant(project)
        mine = projects == p
        if tenant.budget_usd is not None and state.spent_usd.get(project, 0) + money[mine].sum() > \
                tenant.budget_usd + 1e-6:
            found.append(f"tenant {project}: over its budget of ${tenant.budget_usd:,.2f}")
        accelerators = float(units[mine & (kind != 0)].sum())
        if tenant.max_accelerators is not None and \
                state.accelerators_held.get(project, 0) + accelerators > tenant.max_accelerators + 1e-9:
            found.append(f"tenant {project}: over its quota of {tenant.max_accelerators} accelerators")
    return found


def _final_outcomes(catalog: Catalog, policy: PlacementPolicy, trace: Trace, pending: np.ndarray, up: dict[str, bool],
                    spent: dict[str, float]) -> np.ndarray:
    """Why the jobs still pending at the end were not placed (held = no legal region even with every unit free)."""
    if not len(pending):
        return np.zeros(0, dtype=np.int8)
    window_catalog = catalog.with_status({name: "up" if ok else "down" for name, ok in up.items()})
    problem = build_problem(trace.batch.take(pending), window_catalog, policy, FleetState.empty(catalog))
    return np.where(problem.legal.reshape(len(pending), -1).any(axis=1), PLACED, HELD)


# ----------------------------------------------------------------------------------------------- plots


def plot(result: SimResult, path: str | Path) -> Path:
    """Four panels as one PNG: utilization per region, queue-time histogram, heuristic vs optimum per checked
    window, and jobs waiting/running over time with outages shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from embodia.core.atomic import atomic_file

    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    util = result.utilization()
    axes[0, 0].bar(list(util), [100 * v for v in util.values()], color="tab:blue")
    axes[0, 0].set_ylabel("utilization, % of price-weighted capacity")
    axes[0, 0].set_title("per-region utilization")
    axes[0, 0].tick_params(axis="x", rotation=40)
    queue_h = result.queue_h if len(result.queue_h) else np.zeros(1)
    axes[0, 1].hist(queue_h, bins=50, color="tab:orange")
    axes[0, 1].set_yscale("log")
    axes[0, 1].set_xlabel("queue time, hours (arrival to first start)")
    axes[0, 1].set_ylabel("jobs")
    axes[0, 1].set_title(f"queue times (p95 {np.percentile(queue_h, 95):.2f} h)")
    if result.checked:
        best = np.array([c["optimum"] for c in result.checked])
        ours = np.array([c["ours"] for c in result.checked])
        axes[1, 0].scatter(best, ours, s=14)
        axes[1, 0].plot([best.min(), best.max()], [best.min(), best.max()], "k--", lw=1, label="optimum")
        gap = result.gap()["gap"]
        axes[1, 0].set_title(f"heuristic vs exact MILP per window (total gap {100 * gap:.3f} %)")
        axes[1, 0].legend()
    else:
        axes[1, 0].set_title("no windows checked against the MILP")
    axes[1, 0].set_xlabel("optimum objective, USD")
    axes[1, 0].set_ylabel(f"{result.config.method} objective, USD")
    t = np.array([p["t_h"] for p in result.timeline])
    axes[1, 1].plot(t, [p["pending"] for p in result.timeline], label="waiting or held")
    axes[1, 1].plot(t, [p["running"] for p in result.timeline], label="running")
    for name, start, end in result.trace_outages:
        axes[1, 1].axvspan(start, min(end, result.horizon_h), color="red", alpha=0.12)
        axes[1, 1].text(start, 0, name, fontsize=7, rotation=90, va="bottom")
    axes[1, 1].set_xlabel("simulated time, hours (red: region outages)")
    axes[1, 1].set_ylabel("jobs")
    axes[1, 1].legend()
    axes[1, 1].set_title("queue over time")
    fig.suptitle(f"fleet simulation: {result.config.jobs:,} jobs, {len(result.violations)} violations")
    fig.tight_layout()
    with atomic_file(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)
    return Path(path)


__all__ = ["CPU", "SimConfig", "SimResult", "make_trace", "plot", "simulate", "violations"]
