"""Cost-optimal placement of a batch of queued jobs over regions: hard rules first, then cost.

Every (job, region, pool kind) gets a legality bit from the policy (region up, data residency, export rules,
pool present and large enough) and, where legal, a cost in USD: compute (units x hours x price) + data egress
(input GB x the egress price of the region holding the data, when it moves) + expected queueing (hours of wait
x `queue_cost_per_hour`). Batches up to `EXACT_MAX_JOBS` jobs are solved exactly as a MILP (SciPy `milp`, HiGHS)
under capacity, tenant budget and accelerator-quota constraints; larger ones by a vectorized regret-greedy
heuristic. A job that cannot be placed now waits (capacity, budget or quota) at a penalty far above any
placement's cost, so every solver places as many jobs as it can first; a job with no legal region is held.
All matrices are NumPy over (jobs, regions, kinds); there is no Python loop per job in either solver.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from embodia.core.errors import UserError
from embodia.platform.regions.catalog import CPU, Catalog
from embodia.platform.regions.policy import PlacementPolicy

EXACT_MAX_JOBS = 400
MILP_TIME_LIMIT_S = 60.0
WAIT_PENALTY_FACTOR = 10.0  # a waiting job costs 10x its dearest legal option (x its priority weight)

# why a region is illegal for a job, checked in this order (the first failing rule is reported)
LEGAL, DOWN, RESIDENCY, NO_POOL, EXPORT, TOO_BIG = range(6)
# what happened to a job
PLACED, HELD, WAIT_CAPACITY, WAIT_BUDGET, WAIT_QUOTA = range(5)
OUTCOME_NAMES = {PLACED: "placed", HELD: "held", WAIT_CAPACITY: "waiting", WAIT_BUDGET: "waiting",
                 WAIT_QUOTA: "waiting"}
Method = Literal["auto", "milp", "heuristic"]


@dataclass(frozen=True)
class JobSpec:
    """One queued job as placement sees it (built from a queue row, or by the fleet simulator)."""

    id: int
    type: str
    project: str = "default"
    jurisdictions: frozenset[str] = frozenset()
    data_gb: float = 0.0
    data_region: str | None = None  # where its inputs live (None: the catalog's home region)
    priority: int = 0
    count: int | None = None  # units needed (None: the policy's count for its type)
    hours: float | None = None  # expected run time (None: the policy's)


@dataclass
class JobBatch:
    """Jobs as columns (J,), with small lookup lists for the categorical ones."""

    ids: np.ndarray  # (J,) int64
    types: list[str]
    type_index: np.ndarray  # (J,) into types
    projects: list[str]
    project_index: np.ndarray  # (J,) into projects
    residency_sets: list[frozenset[str]]
    residency_index: np.ndarray  # (J,) into residency_sets
    units: np.ndarray  # (J,) float, units of the chosen pool kind
    hours: np.ndarray  # (J,) float
    data_gb: np.ndarray  # (J,) float
    data_region: np.ndarray  # (J,) int, region index holding the inputs
    priority: np.ndarray  # (J,) int
    allreduce_gb: np.ndarray | None = None  # (J,) GB all-reduced per step (data-parallel), 0 = none
    step_s: np.ndarray | None = None  # (J,) compute seconds per step

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, index: np.ndarray) -> JobBatch:
        """The sub-batch of rows `index` (lookup lists shared)."""
        return JobBatch(ids=self.ids[index], types=self.types, type_index=self.type_index[index],
                        projects=self.projects, project_index=self.project_index[index],
                        residency_sets=self.residency_sets, residency_index=self.residency_index[index],
                        units=self.units[index], hours=self.hours[index], data_gb=self.data_gb[index],
                        data_region=self.data_region[index], priority=self.priority[index],
                        allreduce_gb=None if self.allreduce_gb is None else self.allreduce_gb[index],
                        step_s=None if self.step_s is None else self.step_s[index])


def _codes(values: list, known: list | None = None) -> tuple[list, np.ndarray]:
    """Categorical encoding: (distinct values, index of each)."""
    lookup: dict[Any, int] = {value: i for i, value in enumerate(known or [])}
    index = np.fromiter((lookup.setdefault(value, len(lookup)) for value in values), dtype=np.int64,
                        count=len(values))
    return list(lookup), index


def job_batch(specs: list[JobSpec], catalog: Catalog, policy: PlacementPolicy) -> JobBatch:
    """Columns of `specs`, with each job's needs filled in from the policy and every number checked."""
    types, type_index = _codes([spec.type for spec in specs])
    projects, project_index = _codes([spec.project for spec in specs])
    residency_sets, residency_index = _codes([frozenset(t.upper() for t in spec.jurisdictions) for spec in specs])
    region_of = {name: r for r, name in enumerate(catalog.names)}
    home = region_of[catalog.home]
    data_region = np.empty(len(specs), dtype=np.int64)
    for i, spec in enumerate(specs):
        if spec.data_region is not None and spec.data_region not in region_of:
            raise UserError(f"job {spec.id}: its data lives in unknown region {spec.data_region!r}; "
                            f"known: {', '.join(catalog.names)}")
        data_region[i] = home if spec.data_region is None else region_of[spec.data_region]
    needs = [policy.needs(job_type) for job_type in types]
    units = np.array([np.nan if spec.count is None else spec.count for spec in specs], dtype=float)
    units = np.where(np.isnan(units), np.array([n.count for n in needs], dtype=float)[type_index], units)
    hours = np.array([np.nan if spec.hours is None else spec.hours for spec in specs], dtype=float)
    hours = np.where(np.isnan(hours), np.array([n.hours for n in needs], dtype=float)[type_index], hours)
    data_gb = np.array([spec.data_gb for spec in specs], dtype=float)
    for name, column in (("count", units), ("hours", hours), ("data_gb", data_gb)):
        bad = ~np.isfinite(column) | (column < 0) | ((column == 0) & (name != "data_gb"))
        if bad.any():
            i = int(np.argmax(bad))
            raise UserError(f"job {specs[i].id}: {name}={column[i]!r}; expected a finite number > 0"
                            + (" (>= 0 for data_gb)" if name == "data_gb" else ""))
    return JobBatch(ids=np.array([spec.id for spec in specs], dtype=np.int64), types=types, type_index=type_index,
                    projects=projects, project_index=project_index, residency_sets=residency_sets,
                    residency_index=residency_index, units=units, hours=hours, data_gb=data_gb,
                    data_region=data_region, priority=np.array([spec.priority for spec in specs], dtype=np.int64),
                    allreduce_gb=np.array([n.allreduce_gb for n in needs], dtype=float)[type_index],
                    step_s=np.array([n.step_s for n in needs], dtype=float)[type_index])


@dataclass
class FleetState:
    """What is already in use: free units per (region, kind), queue waits, tenants' spend and accelerators held."""

    free: np.ndarray  # (R, K) units free now
    wait_h: np.ndarray  # (R, K) expected queueing before a job starts, hours
    spent_usd: dict[str, float] = field(default_factory=dict)
    accelerators_held: dict[str, float] = field(default_factory=dict)

    @classmethod
    def empty(cls, catalog: Catalog) -> FleetState:
        """Nothing running: every unit free, no waits."""
        arrays = catalog.arrays()
        return cls(free=arrays.count.astype(float), wait_h=np.zeros(arrays.count.shape))


@dataclass
class Problem:
    """The placement problem as matrices: legality, reasons and costs over (jobs, regions, kinds)."""

    batch: JobBatch
    catalog: Catalog
    policy: PlacementPolicy
    legal: np.ndarray  # (J, R, K) bool
    reasons: np.ndarray  # (J, R) int8, LEGAL or the first rule a region breaks
    compute: np.ndarray  # (J, R, K) USD, inf where no pool
    egress: np.ndarray  # (J, R) USD
    queue: np.ndarray  # (J, R, K) USD
    free: np.ndarray  # (R, K)
    budget_left: np.ndarray  # (P,) USD, inf = no cap
    quota_left: np.ndarray  # (P,) accelerators, inf = no cap
    wait_penalty: np.ndarray  # (J,) USD
    money: np.ndarray  # (J, R, K) what an option is charged (compute + egress), the quantity budgets cap
    total: np.ndarray  # (J, R, K) money + queueing of each legal option, inf where illegal


def build_problem(batch: JobBatch, catalog: Catalog, policy: PlacementPolicy,
                  state: FleetState | None = None) -> Problem:
    """Legality masks, rejection reasons and cost matrices of a batch, all vectorized over (J, R, K)."""
    state = state or FleetState.empty(catalog)
    arrays = catalog.arrays()
    kinds = arrays.kinds
    need = np.array([[kind in policy.needs(t).kinds for kind in kinds] for t in batch.types], dtype=bool)
    need = need.reshape(len(batch.types), len(kinds))[batch.type_index]  # (J, K)
    residency = np.array([policy.residency_mask(catalog, tags) for tags in batch.residency_sets], dtype=bool)
    residency = residency.reshape(len(batch.residency_sets), len(arrays.names))[batch.residency_index]  # (J, R)
    has = arrays.count > 0  # (R, K)
    export = policy.export_mask(catalog)  # (R, K)
    fits = batch.units[:, None, None] <= arrays.count[None]  # (J, R, K)
    pool = need[:, None, :] & has[None]
    allowed = pool & export[None]
    legal = allowed & fits & arrays.up[None, :, None] & residency[:, :, None]
    reasons = np.select([~arrays.up[None, :], ~residency, ~pool.any(-1), ~allowed.any(-1), ~(allowed & fits).any(-1)],
                        [DOWN, RESIDENCY, NO_POOL, EXPORT, TOO_BIG], LEGAL).astype(np.int8)
    compute = (batch.units * batch.hours)[:, None, None] * arrays.price[None] * _allreduce_slowdown(batch, catalog)
    moves = batch.data_region[:, None] != np.arange(len(arrays.names))[None]
    egress = (batch.data_gb * arrays.egress[batch.data_region])[:, None] * moves
    queue = np.broadcast_to(state.wait_h[None] * policy.queue_cost_per_hour, compute.shape)
    money = compute + egress[:, :, None]
    total = np.where(legal, money + queue, np.inf)
    budget_left, quota_left = _tenant_caps(batch, policy, state)
    dearest = np.where(legal, total, -np.inf).reshape(len(batch), -1).max(axis=1, initial=0.0)
    wait_penalty = WAIT_PENALTY_FACTOR * (1.0 + np.maximum(dearest, 0)) * (1 + np.clip(batch.priority, 0, 100))
    return Problem(batch=batch, catalog=catalog, policy=policy, legal=legal, reasons=reasons, compute=compute,
                   egress=egress, queue=queue, free=np.asarray(state.free, dtype=float), budget_left=budget_left,
                   quota_left=quota_left, wait_penalty=wait_penalty, money=money, total=total)


def _allreduce_slowdown(batch: JobBatch, catalog: Catalog) -> np.ndarray:
    """(J, R, 1) factor on a data-parallel job's hours in each region: its steps wait for all-reduces over that
    region's fabric (1 for single-unit jobs or jobs without gradients to exchange)."""
    from embodia.platform.regions.network import slowdown

    factor = np.ones((len(batch), len(catalog.regions), 1))
    if batch.allreduce_gb is None or not (batch.allreduce_gb > 0).any():
        return factor
    for r, region in enumerate(catalog.regions):
        factor[:, r, 0] = slowdown(batch.allreduce_gb, batch.units, batch.step_s, region.network)
    return factor


def _tenant_caps(batch: JobBatch, policy: PlacementPolicy, state: FleetState) -> tuple[np.ndarray, np.ndarray]:
    """(P,) budget left in USD and (P,) accelerators still allowed, inf where a tenant has no cap."""
    budget, quota = np.full(len(batch.projects), np.inf), np.full(len(batch.projects), np.inf)
    for p, project in enumerate(batch.projects):
        tenant = policy.tenant(project)
        if tenant.budget_usd is not None:
            budget[p] = max(tenant.budget_usd - state.spent_usd.get(project, 0.0), 0.0)
        if tenant.max_accelerators is not None:
            quota[p] = max(tenant.max_accelerators - state.accelerators_held.get(project, 0.0), 0.0)
    return budget, quota


# ----------------------------------------------------------------------------------------------- solvers


@dataclass
class Assignment:
    """A solver's answer: per job the flat option index r*K+k (-1: not placed) and its outcome code."""

    option: np.ndarray  # (J,) int
    outcome: np.ndarray  # (J,) int8
    optimal: bool = True


def solve_milp(problem: Problem, *, time_limit_s: float = MILP_TIME_LIMIT_S) -> Assignment:
    """The exact optimum: binary x[j, option] + wait[j], one per job, under capacity, budget and quota rows."""
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import coo_array

    J = len(problem.batch)
    R, K = problem.free.shape
    legal = problem.legal.reshape(J, R * K)
    opt_job, opt_col = np.nonzero(legal)
    outcome = np.where(legal.any(axis=1), PLACED, HELD).astype(np.int8)
    if len(opt_job) == 0:
        return Assignment(option=np.full(J, -1), outcome=outcome)
    total = problem.total.reshape(J, R * K)[opt_job, opt_col]
    money = problem.money.reshape(J, R * K)[opt_job, opt_col]
    n_opt = len(opt_job)
    wait_var = n_opt + np.arange(J)
    cost = np.concatenate([total, np.where(outcome == PLACED, problem.wait_penalty, 0.0)])
    rows, cols, vals, lower, upper = [], [], [], [], []

    def add(row_ids: np.ndarray, col_ids: np.ndarray, values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> None:
        offset = sum(len(lo) for lo in lower)
        rows.append(row_ids + offset)
        cols.append(col_ids)
        vals.append(values)
        lower.append(lo)
        upper.append(hi)

    # each job: exactly one option or waiting (held jobs: waiting only, at no cost)
    add(np.concatenate([opt_job, np.arange(J)]), np.concatenate([np.arange(n_opt), wait_var]),
        np.ones(n_opt + J), np.ones(J), np.ones(J))
    units = problem.batch.units[opt_job]
    buckets, bucket_row = np.unique(opt_col, return_inverse=True)
    add(bucket_row, np.arange(n_opt), units, np.full(len(buckets), -np.inf), problem.free.reshape(-1)[buckets])
    project = problem.batch.project_index[opt_job]
    for caps, weights in ((problem.budget_left, money), (problem.quota_left, units * (opt_col % K != 0))):
        capped = np.flatnonzero(np.isfinite(caps))
        if len(capped):
            row_of = np.full(len(caps), -1)
            row_of[capped] = np.arange(len(capped))
            keep = row_of[project] >= 0
            add(row_of[project][keep], np.flatnonzero(keep), weights[keep], np.full(len(capped), -np.inf),
                caps[capped])
    matrix = coo_array((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                       shape=(sum(len(lo) for lo in lower), n_opt + J)).tocsr()
    result = milp(cost, integrality=np.ones(n_opt + J), bounds=Bounds(0, 1),
                  constraints=LinearConstraint(matrix, np.concatenate(lower), np.concatenate(upper)),
                  options={"time_limit": time_limit_s, "mip_rel_gap": 1e-7})
    if result.x is None:
        raise RuntimeError(f"HiGHS found no feasible placement ({result.message}); waiting is always feasible, "
                           "so this is a bug")
    chosen = result.x[:n_opt] > 0.5
    option = np.full(J, -1)
    option[opt_job[chosen]] = opt_col[chosen]
    waiting = (outcome == PLACED) & (option < 0)
    outcome[waiting] = _wait_reason(problem, np.flatnonzero(waiting), option)
    return Assignment(option=option, outcome=outcome, optimal=result.status == 0)


def _wait_reason(problem: Problem, jobs: np.ndarray, option: np.ndarray) -> np.ndarray:
    """Why legal jobs were left waiting: budget when their cheapest option exceeds what the tenant has left after
    this batch's placements, quota when their accelerators exceed what is left of the tenant's, else capacity."""
    if len(jobs) == 0:
        return np.zeros(0, dtype=np.int8)
    J, K = len(problem.batch), problem.free.shape[1]
    placed = np.flatnonzero(option >= 0)
    spent = np.bincount(problem.batch.project_index[placed], minlength=len(problem.budget_left),
                        weights=problem.money.reshape(J, -1)[placed, option[placed]])
    held = np.bincount(problem.batch.project_index[placed], minlength=len(problem.quota_left),
                       weights=problem.batch.units[placed] * (option[placed] % K != 0))
    money = np.where(problem.legal, problem.money, np.inf).reshape(J, -1)[jobs].min(axis=1)
    project = problem.batch.project_index[jobs]
    over_budget = money > (problem.budget_left - spent)[project] + 1e-9
    accel_only = ~problem.legal[jobs][:, :, 0].any(axis=1)  # no CPU option: it needs accelerators
    over_quota = accel_only & (problem.batch.units[jobs] > (problem.quota_left - held)[project] + 1e-9)
    return np.select([over_budget, over_quota], [WAIT_BUDGET, WAIT_QUOTA], WAIT_CAPACITY).astype(np.int8)


def _grouped_cumsum(group: np.ndarray, rank: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Running sum of `values` within each group, in `rank` order, returned in the input's order."""
    if len(group) == 0:
        return np.zeros(0)
    order = np.lexsort((rank, group))
    sums = np.cumsum(values[order])
    group_sorted = group[order]
    starts = np.flatnonzero(np.r_[True, group_sorted[1:] != group_sorted[:-1]])
    before = np.repeat(sums[starts] - values[order][starts], np.diff(np.r_[starts, len(order)]))
    result = np.empty_like(sums)
    result[order] = sums - before
    return result


def solve_heuristic(problem: Problem) -> Assignment:
    """Regret-greedy under three bidding orders (regret per unit fixed up front; re-read every round from the
    pools still open; priority first); the cheapest answer wins."""
    J = len(problem.batch)
    cost = problem.total.reshape(J, -1)
    answers = [_greedy(problem, _bid_rank(cost, problem.wait_penalty, problem.batch.units)), _greedy(problem, None),
               _greedy(problem, _priority_rank(cost, problem.batch.priority))]
    return min(answers, key=lambda answer: _objective(problem, answer))


def _objective(problem: Problem, answer: Assignment) -> float:
    J = len(problem.batch)
    placed = answer.option >= 0
    chosen = problem.total.reshape(J, -1)[np.flatnonzero(placed), answer.option[placed]].sum()
    waiting = (answer.outcome != PLACED) & (answer.outcome != HELD)
    return float(chosen + problem.wait_penalty[waiting].sum())


def _fits_cap(project: np.ndarray, rank: np.ndarray, use: np.ndarray, left: np.ndarray) -> np.ndarray:
    """Which bids stay within their tenant's cap (budget or quota), taken in rank order; uncapped tenants pass."""
    capped = np.isfinite(left[project])
    fits = np.ones(len(project), dtype=bool)
    if capped.any():
        fits[capped] = _grouped_cumsum(project[capped], rank[capped], use[capped]) <= left[project[capped]] + 1e-9
    return fits


def _greedy(problem: Problem, rank: np.ndarray | None) -> Assignment:
    """Vectorized rounds: every unplaced job bids for its cheapest open option; within each (region, kind) pool
    the bids are taken in `rank` order while units, the tenant's budget and its accelerator quota last; losers
    try their next option, and a job with none left waits."""
    J = len(problem.batch)
    R, K = problem.free.shape
    cost = problem.total.reshape(J, R * K).copy()
    money = problem.money.reshape(J, R * K)
    units, project = problem.batch.units, problem.batch.project_index
    free = problem.free.reshape(-1).copy()
    budget, quota = problem.budget_left.copy(), problem.quota_left.copy()
    accelerator_col = np.arange(R * K) % K != 0
    option = np.full(J, -1)
    outcome = np.where(np.isfinite(cost).any(axis=1), PLACED, HELD).astype(np.int8)
    last_reason = _close_unaffordable(cost, money, units, project, budget, quota, accelerator_col)
    open_jobs = np.flatnonzero(outcome == PLACED)
    dynamic = rank is None
    while len(open_jobs):
        # full pools closed to every open job first (it would lose there anyway: free units only shrink)
        sub = cost[open_jobs]
        full = (free[None, :] < units[open_jobs, None] - 1e-9) & np.isfinite(sub)
        last_reason[open_jobs[full.any(axis=1)]] = WAIT_CAPACITY
        sub[full] = np.inf
        cost[open_jobs] = sub
        stuck = ~np.isfinite(sub).any(axis=1)
        outcome[open_jobs[stuck]] = last_reason[open_jobs[stuck]]
        open_jobs = open_jobs[~stuck]
        if not len(open_jobs):
            break
        if dynamic:  # regret re-read every round from what is still open
            rank = np.zeros(J, dtype=np.int64)
            rank[open_jobs] = _bid_rank(cost[open_jobs], problem.wait_penalty[open_jobs], units[open_jobs])
        choice = cost[open_jobs].argmin(axis=1)
        fits_pool = _grouped_cumsum(choice, rank[open_jobs], units[open_jobs]) <= free[choice] + 1e-9
        take, took = open_jobs[fits_pool], choice[fits_pool]
        spend = money[take, took]
        held = units[take] * accelerator_col[took]
        fits_budget = _fits_cap(project[take], rank[take], spend, budget)
        fits_quota = _fits_cap(project[take], rank[take], held, quota)
        won = fits_budget & fits_quota
        option[take[won]] = took[won]
        np.subtract.at(free, took[won], units[take[won]])
        np.subtract.at(budget, project[take[won]], spend[won])
        np.subtract.at(quota, project[take[won]], held[won])
        # a bid over budget loses that option (a cheaper one may fit); over quota, every accelerator option
        over_budget = ~fits_budget & (spend > budget[project[take]] + 1e-9)
        cost[take[over_budget], took[over_budget]] = np.inf
        last_reason[take[over_budget]] = WAIT_BUDGET
        over_quota = fits_budget & ~fits_quota & (held > quota[project[take]] + 1e-9)
        if over_quota.any():
            cost[np.ix_(take[over_quota], np.flatnonzero(accelerator_col))] = np.inf
            last_reason[take[over_quota]] = WAIT_QUOTA
        lost, lost_choice = open_jobs[~fits_pool], choice[~fits_pool]
        full = free[lost_choice] < units[lost] - 1e-9
        cost[lost[full], lost_choice[full]] = np.inf
        last_reason[lost[full]] = WAIT_CAPACITY
        open_jobs = open_jobs[option[open_jobs] < 0]
        out_of_options = ~np.isfinite(cost[open_jobs]).any(axis=1)
        outcome[open_jobs[out_of_options]] = last_reason[open_jobs[out_of_options]]
        open_jobs = open_jobs[~out_of_options]
    return Assignment(option=option, outcome=outcome, optimal=False)


def _close_unaffordable(cost: np.ndarray, money: np.ndarray, units: np.ndarray, project: np.ndarray,
                        budget: np.ndarray, quota: np.ndarray, accelerator_col: np.ndarray) -> np.ndarray:
    """Close (in place) each option over its tenant's whole budget or accelerator quota left before any bid, so
    a backlog of capped jobs costs one pass, not a round per option; returns each job's wait reason so far."""
    over_budget = money > budget[project][:, None] + 1e-9
    over_quota = (units[:, None] > quota[project][:, None] + 1e-9) & accelerator_col[None, :]
    finite = np.isfinite(cost)
    reason = np.full(len(cost), WAIT_CAPACITY, dtype=np.int8)
    reason[(finite & over_quota).any(axis=1)] = WAIT_QUOTA
    reason[(finite & over_budget).any(axis=1)] = WAIT_BUDGET
    cost[over_budget | over_quota] = np.inf
    return reason


def _priority_rank(cost: np.ndarray, priority: np.ndarray) -> np.ndarray:
    """(J,) bidding order: higher priority first, then larger regret."""
    two = np.partition(cost, 1, axis=1)[:, :2] if cost.shape[1] >= 2 else np.c_[cost, np.full(len(cost), np.inf)]
    regret = np.where(np.isfinite(two[:, 1]), two[:, 1] - np.where(np.isfinite(two[:, 0]), two[:, 0], 0), 1e18)
    order = np.lexsort((-regret, -priority))
    rank = np.empty(len(cost), dtype=np.int64)
    rank[order] = np.arange(len(cost))
    return rank


def _bid_rank(cost: np.ndarray, wait_penalty: np.ndarray, units: np.ndarray) -> np.ndarray:
    """(J,) bidding order: larger regret per unit first, where regret is what a job loses if it misses its
    cheapest option (its second-cheapest option, or waiting at its penalty when it has no other)."""
    two = np.partition(cost, 1, axis=1)[:, :2] if cost.shape[1] >= 2 else np.c_[cost, np.full(len(cost), np.inf)]
    second = np.where(np.isfinite(two[:, 1]), two[:, 1], wait_penalty)
    regret = np.where(np.isfinite(two[:, 0]), second - two[:, 0], 0.0) / units
    order = np.argsort(-regret, kind="stable")
    rank = np.empty(len(cost), dtype=np.int64)
    rank[order] = np.arange(len(cost))
    return rank


# ----------------------------------------------------------------------------------------------- decision


@dataclass
class Decision:
    """Where each job of a batch goes, what it costs, and why every other region was not chosen."""

    problem: Problem
    assignment: Assignment
    method: str
    solve_s: float

    @property
    def region(self) -> np.ndarray:
        """(J,) region index, -1 when not placed."""
        K = self.problem.free.shape[1]
        return np.where(self.assignment.option >= 0, self.assignment.option // K, -1)

    @property
    def kind(self) -> np.ndarray:
        """(J,) pool kind index, -1 when not placed."""
        K = self.problem.free.shape[1]
        return np.where(self.assignment.option >= 0, self.assignment.option % K, -1)

    def _chosen(self, matrix: np.ndarray) -> np.ndarray:
        J = len(self.problem.batch)
        placed = self.assignment.option >= 0
        flat = matrix.reshape(J, -1)
        return np.where(placed, flat[np.arange(J), np.maximum(self.assignment.option, 0)], 0.0)

    @property
    def money(self) -> np.ndarray:
        """(J,) USD charged for each placed job (compute + egress), 0 when not placed."""
        return self._chosen(self.problem.money)

    @property
    def objective(self) -> float:
        """What the solvers minimize: placed jobs' total cost + the penalty of each waiting job."""
        waiting = (self.assignment.outcome != PLACED) & (self.assignment.outcome != HELD)
        return float(self._chosen(self.problem.total).sum() + self.problem.wait_penalty[waiting].sum())

    def counts(self) -> dict[str, int]:
        """How many jobs were placed, held and left waiting."""
        outcome = self.assignment.outcome
        return {"placed": int((outcome == PLACED).sum()), "held": int((outcome == HELD).sum()),
                "waiting": int(((outcome != PLACED) & (outcome != HELD)).sum())}

    def explain(self, j: int) -> dict[str, Any]:
        """JSON-ready explanation of job row `j`: the decision, its cost, and each rejected region with why."""
        return _explain(self, j)

    def explanations(self) -> list[dict[str, Any]]:
        """`explain` for every job of the batch, in order."""
        return [self.explain(j) for j in range(len(self.problem.batch))]


def place(problem: Problem, *, method: Method = "auto", exact_max_jobs: int = EXACT_MAX_JOBS,
          time_limit_s: float = MILP_TIME_LIMIT_S) -> Decision:
    """Solve a placement problem: exactly (MILP) up to `exact_max_jobs` jobs under 'auto', else the heuristic."""
    if method not in ("auto", "milp", "heuristic"):
        raise UserError(f"method={method!r}: expected auto, milp or heuristic")
    use_milp = method == "milp" or (method == "auto" and len(problem.batch) <= exact_max_jobs)
    started = time.perf_counter()
    assignment = solve_milp(problem, time_limit_s=time_limit_s) if use_milp else solve_heuristic(problem)
    return Decision(problem=problem, assignment=assignment, method="milp" if use_milp else "heuristic",
                    solve_s=time.perf_counter() - started)


def relative_gap(heuristic: Decision, exact: Decision) -> float:
    """(heuristic - optimum) / optimum of the objective; 0 when both are 0."""
    best = exact.objective
    return 0.0 if best == 0 else (heuristic.objective - best) / abs(best)


# ----------------------------------------------------------------------------------------------- explanations


def _money(value: float) -> str:
    return f"${value:,.2f}"


def _rule_text(problem: Problem, j: int, r: int, code: int) -> str:
    """One line: why region r is illegal for job j under the rule `code`."""
    batch, catalog, policy = problem.batch, problem.catalog, problem.policy
    region = catalog.regions[r]
    needs = policy.needs(batch.types[batch.type_index[j]])
    kinds = catalog.kinds
    if code == DOWN:
        return "region is down"
    if code == RESIDENCY:
        tags = sorted(batch.residency_sets[batch.residency_index[j]])
        allowed = _allowed_names(problem, int(batch.residency_index[j]))
        return (f"data residency: its data is under {', '.join(tags)}, which may be read (and what derives from it "
                f"stored) only in {', '.join(allowed) or 'no region'}; this region is {region.jurisdiction}")
    if code == NO_POOL:
        return f"no {'/'.join(needs.kinds)} here (job type {batch.types[batch.type_index[j]]} needs one of them)"
    if code == EXPORT:
        present = [k for k in needs.kinds if k in region.pools() and region.pools()[k].count > 0]
        allowed = policy.accelerators.allowed.get(region.name, kinds)
        return (f"export rules: {'/'.join(present)} may not run in {region.name} "
                f"(allowed there: {', '.join(allowed) or 'nothing'})")
    largest = max((pool.count for kind, pool in region.pools().items() if kind in needs.kinds), default=0)
    return f"needs {batch.units[j]:g} units at once; the largest allowed pool here has {largest}"


def _allowed_names(problem: Problem, residency_index: int) -> list[str]:
    """Regions where data of one residency set may go (memoized on the problem: explanations repeat it)."""
    cache = problem.__dict__.setdefault("_allowed_names", {})
    if residency_index not in cache:
        tags = problem.batch.residency_sets[residency_index]
        mask = problem.policy.residency_mask(problem.catalog, tags)
        cache[residency_index] = [name for name, ok in zip(problem.catalog.names, mask) if ok]
    return cache[residency_index]


def _explain(decision: Decision, j: int) -> dict[str, Any]:
    problem, assignment = decision.problem, decision.assignment
    batch, catalog = problem.batch, problem.catalog
    K = problem.free.shape[1]
    total = problem.total[j]  # (R, K)
    best_in_region = total.min(axis=1)
    outcome = int(assignment.outcome[j])
    chosen_r = int(assignment.option[j] // K) if assignment.option[j] >= 0 else -1
    needs = problem.policy.needs(batch.types[batch.type_index[j]])
    info: dict[str, Any] = {
        "job": int(batch.ids[j]), "type": batch.types[batch.type_index[j]],
        "project": batch.projects[batch.project_index[j]],
        "needs": {"kinds": needs.kinds, "units": float(batch.units[j]), "hours": float(batch.hours[j])},
        "data": {"jurisdictions": sorted(batch.residency_sets[batch.residency_index[j]]),
                 "gb": float(batch.data_gb[j]), "region": catalog.names[batch.data_region[j]]},
        "decision": OUTCOME_NAMES[outcome], "method": decision.method, "region": None, "kind": None}
    if chosen_r >= 0:
        k = int(assignment.option[j] % K)
        if batch.allreduce_gb is not None and batch.allreduce_gb[j] > 0 and batch.units[j] > 1:
            base = batch.units[j] * batch.hours[j] * catalog.regions[chosen_r].pools()[catalog.kinds[k]].price_per_hour
            info["allreduce_slowdown"] = round(float(problem.compute[j, chosen_r, k] / base), 4) if base else 1.0
        info.update(region=catalog.names[chosen_r], kind=catalog.kinds[k], cost_usd={
            "compute": round(float(problem.compute[j, chosen_r, k]), 4),
            "egress": round(float(problem.egress[j, chosen_r]), 4),
            "queue": round(float(problem.queue[j, chosen_r, k]), 4),
            "total": round(float(total[chosen_r, k]), 4)})
    else:
        info["reason"] = _not_placed_text(problem, j, outcome)
    info["rejected"] = {catalog.names[r]: _rejection(problem, j, r, best_in_region, chosen_r, outcome)
                        for r in range(len(catalog.regions)) if r != chosen_r}
    return info


def _not_placed_text(problem: Problem, j: int, outcome: int) -> str:
    project = problem.batch.projects[problem.batch.project_index[j]]
    tenant = problem.policy.tenant(project)
    if outcome == HELD:
        return "held: no region satisfies the residency and accelerator rules for this job (see rejected)"
    if outcome == WAIT_BUDGET:
        return f"waiting: project {project}'s budget cap ({_money(tenant.budget_usd or 0)}) would be exceeded"
    if outcome == WAIT_QUOTA:
        return f"waiting: project {project}'s accelerator quota ({tenant.max_accelerators}) is in use"
    return "waiting: every legal region's pools are full this round"


def _rejection(problem: Problem, j: int, r: int, best_in_region: np.ndarray, chosen_r: int, outcome: int) -> str:
    code = int(problem.reasons[j, r])
    if code != LEGAL:
        return _rule_text(problem, j, r, code)
    cost = best_in_region[r]
    if chosen_r < 0:
        return f"legal ({_money(cost)}), but {_not_placed_text(problem, j, outcome).removeprefix('waiting: ')}"
    chosen = best_in_region[chosen_r]
    if cost >= chosen:
        return f"legal, but costs {_money(cost)} vs {_money(chosen)} in {problem.catalog.names[chosen_r]}"
    return f"legal and cheaper ({_money(cost)}), but its pools went to other jobs of this batch"


def pool_name(catalog: Catalog, k: int) -> str:
    """'cpu' or the accelerator kind of column k."""
    return catalog.kinds[k] if k >= 0 else ""


__all__ = ["CPU", "Decision", "FleetState", "JobBatch", "JobSpec", "Problem", "build_problem", "job_batch", "place",
           "relative_gap", "solve_heuristic", "solve_milp"]
