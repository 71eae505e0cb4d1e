"""Placement: hard rules before cost, MILP against brute force, the heuristic's gap, caps, explanations."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from embodia.platform.regions.catalog import Catalog, Region, Resource
from embodia.platform.regions.fleet import violations
from embodia.platform.regions.placement import (
    HELD,
    PLACED,
    WAIT_BUDGET,
    WAIT_QUOTA,
    FleetState,
    JobSpec,
    build_problem,
    job_batch,
    place,
    relative_gap,
)
from embodia.platform.regions.policy import PlacementPolicy


def _region(name, jurisdiction, cpu=(8, 0.05), egress=0.1, status="up", **accelerators):
    return Region(name=name, jurisdiction=jurisdiction, cpu=Resource(count=cpu[0], price_per_hour=cpu[1]),
                  accelerators={k: Resource(count=c, price_per_hour=p) for k, (c, p) in accelerators.items()},
                  egress_per_gb=egress, status=status)


def _world():
    catalog = Catalog(home="home", regions=[
        _region("home", "HOME", cpu=(2, 0.0), egress=0.0),
        _region("eu-a", "EU", g1=(2, 2.0), g2=(1, 4.0)),
        _region("eu-b", "EU", cpu=(8, 0.04), g1=(4, 2.5)),
        _region("br", "BR", g2=(4, 3.0)),
        _region("ae", "AE", cpu=(8, 0.01), g1=(8, 1.0), g2=(8, 1.0))])
    policy = PlacementPolicy.model_validate({
        "residency": {"EU": {"jurisdictions": ["EU"]}, "BR": {"jurisdictions": ["BR"], "regions": ["home"]}},
        "accelerators": {"allowed": {"ae": ["cpu", "g1"]}},
        "jobs": {"default": {"kinds": ["cpu"], "count": 1, "hours": 1.0},
                 "train": {"kinds": ["g2", "g1"], "count": 1, "hours": 2.0}},
        "tenants": {"poor": {"budget_usd": 3.0}, "small": {"max_accelerators": 1}}})
    return catalog, policy


def _decide(specs, method="milp", state=None, catalog=None, policy=None):
    world = _world()
    catalog, policy = catalog or world[0], policy or world[1]
    problem = build_problem(job_batch(specs, catalog, policy), catalog, policy, state)
    return place(problem, method=method)


def test_hard_rules_are_checked_before_cost_and_every_rejection_has_a_reason():
    decision = _decide([JobSpec(1, "train", jurisdictions=frozenset({"EU"}), data_gb=20, data_region="eu-b")])
    info = decision.explain(0)
    assert info["decision"] == "placed" and info["region"] == "eu-b" and info["kind"] == "g1"
    # ae is cheapest (g1 at $1/h) but EU data may not go there; eu-a's g1 ($2/h) pays $2 egress from eu-b
    assert info["rejected"]["ae"].startswith("data residency: its data is under EU")
    assert info["rejected"]["br"].startswith("data residency")
    assert info["rejected"]["home"].startswith("data residency")
    assert info["rejected"]["eu-a"] == "legal, but costs $6.00 vs $5.00 in eu-b"
    assert set(info["rejected"]) == {"home", "eu-a", "br", "ae"}
    assert info["cost_usd"] == {"compute": 5.0, "egress": 0.0, "queue": 0.0, "total": 5.0}


def test_export_rules_keep_forbidden_kinds_out_of_a_region():
    decision = _decide([JobSpec(1, "train", count=1)], state=None)
    info = decision.explain(0)
    assert info["region"] == "ae" and info["kind"] == "g1"  # g2 is as cheap there but not allowed
    only_g2 = PlacementPolicy.model_validate({"accelerators": {"allowed": {"ae": ["cpu", "g1"]}},
                                     "jobs": {"default": {"kinds": ["cpu"]}, "train": {"kinds": ["g2"]}}})
    info = _decide([JobSpec(1, "train")], policy=only_g2).explain(0)
    assert info["region"] == "br" and info["kind"] == "g2"
    assert info["rejected"]["ae"] == "export rules: g2 may not run in ae (allowed there: cpu, g1)"
    assert info["rejected"]["eu-b"].startswith("no g2 here")


def test_a_job_with_no_legal_region_is_held_with_the_reason():
    catalog, _ = _world()
    down = catalog.with_status({"br": "down"})
    info = _decide([JobSpec(7, "train", jurisdictions=frozenset({"BR"}))], catalog=down).explain(0)
    assert info["decision"] == "held" and info["region"] is None
    assert info["reason"].startswith("held: no region satisfies")
    assert info["rejected"]["br"] == "region is down"
    assert info["rejected"]["home"].startswith("no g2/g1 here")


def test_budget_and_quota_caps_make_jobs_wait_with_the_reason():
    for method in ("milp", "heuristic"):
        decision = _decide([JobSpec(1, "train", project="poor"), JobSpec(2, "train", project="poor")], method)
        # each costs $2 in ae (g1); the $3 budget pays for one
        assert sorted(decision.assignment.outcome.tolist()) == [PLACED, WAIT_BUDGET]
        assert decision.money.sum() <= 3.0
        waiting = int(np.flatnonzero(decision.assignment.outcome == WAIT_BUDGET)[0])
        assert "budget cap ($3.00)" in decision.explain(waiting)["reason"]
        decision = _decide([JobSpec(1, "train", project="small"), JobSpec(2, "train", project="small"),
                            JobSpec(3, "default", project="small")], method)
        assert decision.assignment.outcome.tolist().count(WAIT_QUOTA) == 1
        assert decision.assignment.outcome[2] == PLACED  # CPU jobs do not count against an accelerator quota
    state = FleetState.empty(_world()[0])
    state.spent_usd["poor"] = 2.5
    assert _decide([JobSpec(1, "train", project="poor")], state=state).assignment.outcome[0] == WAIT_BUDGET


def _brute_force(problem):
    """The optimum by enumerating every job's option or waiting (tiny cases only)."""
    J = len(problem.batch)
    R, K = problem.free.shape
    legal = problem.legal.reshape(J, R * K)
    total, money = problem.total.reshape(J, -1), problem.money.reshape(J, -1)
    choices = [list(np.flatnonzero(legal[j])) + [-1] for j in range(J)]
    best = np.inf
    for pick in itertools.product(*choices):
        used = np.zeros(R * K)
        spend = np.zeros(len(problem.budget_left))
        accelerators = np.zeros(len(problem.quota_left))
        cost = 0.0
        for j, option in enumerate(pick):
            if option < 0:
                cost += problem.wait_penalty[j] if legal[j].any() else 0.0
                continue
            used[option] += problem.batch.units[j]
            p = problem.batch.project_index[j]
            spend[p] += money[j, option]
            accelerators[p] += problem.batch.units[j] * (option % K != 0)
            cost += total[j, option]
        if (used <= problem.free.reshape(-1) + 1e-9).all() and (spend <= problem.budget_left + 1e-9).all() \
                and (accelerators <= problem.quota_left + 1e-9).all():
            best = min(best, cost)
    return best


@settings(max_examples=40, deadline=None, database=None)
@given(data=st.data())
def test_milp_equals_brute_force_on_tiny_cases(data):
    catalog, policy = _world()
    n = data.draw(st.integers(1, 4), label="jobs")
    specs = [JobSpec(i, data.draw(st.sampled_from(["train", "default"])),
                     project=data.draw(st.sampled_from(["poor", "small", "rich"])),
                     jurisdictions=frozenset(data.draw(st.sets(st.sampled_from(["EU", "BR"]), max_size=1))),
                     data_gb=data.draw(st.floats(0, 20)), data_region=data.draw(st.sampled_from(catalog.names)),
                     count=data.draw(st.integers(1, 3)), priority=data.draw(st.integers(0, 2))) for i in range(n)]
    problem = build_problem(job_batch(specs, catalog, policy), catalog, policy)
    exact, greedy = place(problem, method="milp"), place(problem, method="heuristic")
    assert exact.objective == pytest.approx(_brute_force(problem), rel=1e-6, abs=1e-6)
    assert greedy.objective >= exact.objective - 1e-6 and relative_gap(greedy, exact) >= -1e-9


# --------------------------------------------------------------- property: residency is never violated

JURISDICTIONS = ["A", "B", "C"]


@st.composite
def worlds(draw):
    """A random catalog, policy and batch of jobs."""
    n_regions = draw(st.integers(2, 5))
    regions = []
    for r in range(n_regions):
        pools = {kind: (draw(st.integers(0, 4)), draw(st.floats(0.1, 5)))
                 for kind in draw(st.sets(st.sampled_from(["g1", "g2"])))}
        regions.append(_region(f"r{r}", draw(st.sampled_from(JURISDICTIONS)),
                               cpu=(draw(st.integers(0, 8)), draw(st.floats(0, 1))), egress=draw(st.floats(0, 1)),
                               status=draw(st.sampled_from(["up", "up", "down"])), **pools))
    catalog = Catalog(home="r0", regions=regions)
    names = catalog.names
    residency = {tag: {"jurisdictions": draw(st.lists(st.sampled_from(JURISDICTIONS), max_size=2)),
                       "regions": draw(st.lists(st.sampled_from(names), max_size=2))}
                 for tag in draw(st.sets(st.sampled_from(JURISDICTIONS)))}
    allowed = {name: draw(st.lists(st.sampled_from(["cpu", "g1", "g2"]), max_size=3))
               for name in draw(st.sets(st.sampled_from(names), max_size=3))}
    kinds = [k for k in catalog.kinds]
    policy = PlacementPolicy.model_validate({
        "residency": residency, "accelerators": {"allowed": {n: [k for k in a if k in kinds] for n, a in allowed.items()}},
        "jobs": {"default": {"kinds": ["cpu"]}, "train": {"kinds": [k for k in ["g1", "g2"] if k in kinds] or ["cpu"]},
                 "eval": {"kinds": [k for k in ["cpu", "g1"] if k in kinds]}},
        "tenants": {"t0": {"budget_usd": draw(st.floats(0, 20))}, "t1": {"max_accelerators": draw(st.integers(0, 3))}}})
    specs = [JobSpec(i, draw(st.sampled_from(["default", "train", "eval"])), project=draw(st.sampled_from(["t0", "t1", "t2"])),
                     jurisdictions=frozenset(draw(st.sets(st.sampled_from(JURISDICTIONS), max_size=2))),
                     data_gb=draw(st.floats(0, 10)), data_region=draw(st.sampled_from(names)),
                     count=draw(st.integers(1, 3))) for i in range(draw(st.integers(1, 12)))]
    return catalog, policy, specs


@settings(max_examples=60, deadline=None, database=None)
@given(world=worlds(), method=st.sampled_from(["milp", "heuristic"]))
def test_residency_export_and_caps_are_never_violated(world, method):
    catalog, policy, specs = world
    problem = build_problem(job_batch(specs, catalog, policy), catalog, policy)
    decision = place(problem, method=method)
    outcome = decision.assignment.outcome
    placed = np.flatnonzero(outcome == PLACED)
    up = {region.name: region.status == "up" for region in catalog.regions}
    assert violations(catalog, policy, problem.batch, placed, decision.region[placed], decision.kind[placed], up) == []
    used = np.zeros(problem.free.shape)
    np.add.at(used, (decision.region[placed], decision.kind[placed]), problem.batch.units[placed])
    assert (used <= problem.free + 1e-9).all()
    for p, project in enumerate(problem.batch.projects):
        mine = placed[problem.batch.project_index[placed] == p]
        tenant = policy.tenant(project)
        if tenant.budget_usd is not None:
            assert decision.money[mine].sum() <= tenant.budget_usd + 1e-6
        if tenant.max_accelerators is not None:
            assert problem.batch.units[mine][decision.kind[mine] != 0].sum() <= tenant.max_accelerators
    # held exactly when no region passes every hard rule, and every explanation names every other region
    for j in range(len(specs)):
        info = decision.explain(j)
        assert (outcome[j] == HELD) == (not problem.legal[j].any())
        assert len(info["rejected"]) == len(catalog.regions) - (info["region"] is not None)
        assert all(isinstance(why, str) and why for why in info["rejected"].values())


def test_the_heuristic_is_within_one_percent_of_the_optimum_when_capacity_is_ample():
    from embodia.platform.regions.catalog import load_catalog
    from embodia.platform.regions.policy import load_policy

    catalog = load_catalog()
    policy = load_policy(catalog=catalog)
    rng = np.random.default_rng(3)
    tags = [frozenset(), frozenset({"EU"}), frozenset({"BR"}), frozenset({"KR"}), frozenset({"JP"})]
    specs = [JobSpec(i, ["train", "generate", "evaluate", "export"][rng.integers(4)], project=f"p{rng.integers(3)}",
                     jurisdictions=tags[rng.integers(len(tags))], data_gb=float(rng.uniform(0, 50)),
                     data_region=catalog.names[rng.integers(len(catalog.names))]) for i in range(300)]
    state = FleetState.empty(catalog)
    state.free *= 0.25
    problem = build_problem(job_batch(specs, catalog, policy), catalog, policy, state)
    exact, greedy = place(problem, method="milp"), place(problem, method="heuristic")
    assert exact.method == "milp" and greedy.method == "heuristic"
    assert 0 <= relative_gap(greedy, exact) < 0.01
    assert place(problem).method == "milp"  # auto: exact at this size
    assert place(problem, exact_max_jobs=100).method == "heuristic"


def test_data_parallel_jobs_prefer_the_faster_fabric_and_all_reduce_costs_grow_with_scale():
    from embodia.platform.regions.catalog import Network
    from embodia.platform.regions.network import allreduce_s, slowdown

    fabric = Network(accelerators_per_node=8, node_gbps=400, nodes_per_leaf=2, spine_oversubscription=4)
    one_node, two_nodes, across_spine = allreduce_s(1.0, [8, 16, 64], fabric)
    assert allreduce_s(1.0, 1, fabric) == 0 and one_node < two_nodes < across_spine
    assert allreduce_s(1e-6, 64, fabric, "tree") < allreduce_s(1e-6, 64, fabric, "ring")  # small: latency-bound
    assert slowdown(1.0, 16, 0.5, fabric) == pytest.approx(1 + two_nodes / 0.5)
    slow = Network(accelerators_per_node=8, node_gbps=25, nodes_per_leaf=1, spine_oversubscription=8)
    catalog = Catalog(home="a", regions=[
        _region("a", "X", g1=(64, 2.0)).model_copy(update={"network": slow}),
        _region("b", "X", g1=(64, 2.1))])
    policy = PlacementPolicy.model_validate({"jobs": {"default": {"kinds": ["cpu"]},
                                             "ddp": {"kinds": ["g1"], "count": 32, "hours": 1.0,
                                                     "allreduce_gb": 0.5, "step_s": 0.2}}})
    decision = _decide([JobSpec(1, "ddp")], catalog=catalog, policy=policy)
    info = decision.explain(0)
    assert info["region"] == "b" and info["allreduce_slowdown"] > 1  # a's cheaper g1 loses to its slow fabric
    single = _decide([JobSpec(1, "ddp", count=1)], catalog=catalog, policy=policy).explain(0)
    assert single["region"] == "a" and "allreduce_slowdown" not in single


def test_a_backlog_of_capped_jobs_waits_with_its_reason_and_leaves_the_others_as_the_milp_places_them():
    # 'poor' has $0.50 of budget left and 'small' holds its one accelerator: before any bid their options close
    catalog, _ = _world()
    state = FleetState.empty(catalog)
    state.spent_usd["poor"] = 2.5
    state.accelerators_held["small"] = 1.0
    specs = [JobSpec(i, "train", project="poor") for i in range(40)]
    specs += [JobSpec(100 + i, "train", project="small") for i in range(40)]
    specs += [JobSpec(200 + i, "train", jurisdictions=frozenset({"EU"}), data_region="eu-b") for i in range(5)]
    heuristic = _decide(specs, "heuristic", state=state)
    exact = _decide(specs, "milp", state=state)
    outcome = heuristic.assignment.outcome
    assert (outcome[:40] == WAIT_BUDGET).all() and (outcome[40:80] == WAIT_QUOTA).all()
    assert outcome[80:].tolist() == exact.assignment.outcome[80:].tolist()
    assert relative_gap(heuristic, exact) < 1e-9
