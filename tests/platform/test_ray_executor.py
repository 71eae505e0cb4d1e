"""The Ray executor on the session's local multi-node cluster (tests/conftest.py: nodes labelled region=eu-france
and region=sa-brazil, 1 CPU each): jobs land only on their region's nodes, an impossible placement is refused
before submission, cancellation and retries go through the Ray path, and threads follow the CPU allocation."""

from __future__ import annotations

import os
import re
import threading
import time

import pytest
import ray

from embodia.platform import queue, registry
from embodia.platform.models import Job
from embodia.platform.pipeline import parse_pipeline
from embodia.platform.ray_executor import (
    RayAttempt,
    RayExecutor,
    RayNode,
    placement_refusal,
    task_options,
)
from embodia.platform.runner import PipelineRunner
from embodia.platform.worker import PlacementRefused, Worker, run_slots

NODE_LINE = re.compile(r"== ray node (\w+) \(([^)]*)\)")


def _worker(store, executor: RayExecutor, name: str = "ray-w") -> Worker:
    return Worker(store, name, lease_s=10, poll_s=0.05, executor=executor)


def _ran_on(store, job_id: int, attempt: int = 1) -> tuple[str, str]:
    """The node id and labels the task recorded from inside itself in the attempt log."""
    found = NODE_LINE.search(queue.attempt_log(store, job_id, attempt).read_text())
    assert found, queue.attempt_log(store, job_id, attempt).read_text()
    return found.group(1), found.group(2)


def _wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def executor(ray_cluster) -> RayExecutor:
    return RayExecutor()  # the driver is already connected to the session's cluster


def test_each_job_lands_only_on_a_node_of_its_region(sqlite_store, executor):
    labels = {node["NodeID"]: node["Labels"] for node in ray.nodes()}
    for index, region in enumerate(("eu-france", "sa-brazil")):
        message = f"{region} #{index}"  # distinct outputs: identical ones are registered once, by content
        job = queue.submit(sqlite_store, "sleep", {"message": message}, region=region).id
        ended = _worker(sqlite_store, executor).run_one()
        log = queue.attempt_log(sqlite_store, job, 1).read_text()
        assert (ended.id, ended.status) == (job, "succeeded"), log
        node_id, shown = _ran_on(sqlite_store, job)
        assert labels[node_id]["region"] == region and f"region={region}" in shown
        assert "1 cpus, OMP_NUM_THREADS=1" in log  # the attempt process got the job's allocation
        assert (registry.artifact_of_job(sqlite_store, job).path / "message.txt").read_text() == message


def test_worker_slots_keep_every_node_busy(sqlite_store, executor):
    jobs = [queue.submit(sqlite_store, "sleep", {"seconds": 4, "steps": 4, "message": region}, region=region).id
            for region in ("eu-france", "sa-brazil")]
    workers = [_worker(sqlite_store, executor, f"slot-{index}") for index in range(2)]
    assert run_slots(workers, max_jobs=1) == 2
    first, second = (queue.attempts(sqlite_store, job)[0] for job in jobs)
    assert first.status == second.status == "succeeded"
    assert first.started_at < second.finished_at and second.started_at < first.finished_at  # side by side


def test_a_job_without_a_region_runs_on_any_node(sqlite_store, executor):
    job = queue.submit(sqlite_store, "noop").id
    assert _worker(sqlite_store, executor).run_one().status == "succeeded"
    node_id, _ = _ran_on(sqlite_store, job)
    assert node_id in {node["NodeID"] for node in ray.nodes() if node["Alive"]}


def test_a_region_without_a_live_node_is_refused_before_submission(sqlite_store, executor):
    job = queue.submit(sqlite_store, "noop", region="ae-dubai", max_attempts=1).id
    ended = _worker(sqlite_store, executor).run_one()
    assert (ended.status, ended.error_type) == ("failed", "placement")
    assert "region 'ae-dubai'" in ended.error and "alive regions: eu-france, sa-brazil" in ended.error
    log = queue.attempt_log(sqlite_store, job, 1).read_text()
    assert "not started" in log and "submitted as Ray task" not in log  # Ray never saw it


def test_a_refused_placement_is_retried_after_a_backoff(sqlite_store, executor):
    job = queue.submit(sqlite_store, "noop", region="ae-dubai", max_attempts=2).id
    again = _worker(sqlite_store, executor).run_one()
    assert (again.id, again.status, again.attempts) == (job, "queued", 1) and again.not_before is not None
    assert queue.attempts(sqlite_store, job)[0].error_type == "placement"


def test_a_job_larger_than_every_node_of_its_region_is_refused(sqlite_store, executor):
    queue.submit(sqlite_store, "noop", region="eu-france", cpus=2, max_attempts=1)
    ended = _worker(sqlite_store, executor).run_one()
    assert ended.error_type == "placement" and "asks for 2 CPUs" in ended.error and "has 1" in ended.error


def test_placement_refusal_reads_region_labels_and_cpus():
    nodes = [RayNode("a", {"region": "eu-france"}, 4.0), RayNode("b", {}, 8.0)]
    job = queue.JobInfo(**{**_job_fields(), "region": "eu-france", "cpus": 4.0})
    assert placement_refusal(job, nodes) is None
    assert "asks for 5 CPUs" in placement_refusal(queue.JobInfo(**{**_job_fields(), "region": "eu-france",
                                                                    "cpus": 5.0}), nodes)
    assert placement_refusal(queue.JobInfo(**{**_job_fields(), "cpus": 8.0}), nodes) is None  # no region: any node
    assert "no alive Ray node labelled region=jp-tokyo" in placement_refusal(
        queue.JobInfo(**{**_job_fields(), "region": "jp-tokyo"}), nodes)


def _job_fields() -> dict:
    return {"id": 7, "type": "noop", "config": {}, "inputs": {}, "project": "default", "priority": 0, "cpus": 1.0,
            "status": "running", "attempts": 1, "max_attempts": 3, "lease_owner": "w", "lease_expires_at": None,
            "heartbeat_at": None, "not_before": None, "cancel_requested": False, "error": None, "error_type": None,
            "output_sha256": None, "metrics": {}, "cpu_seconds": 0.0, "created_at": None, "started_at": None,
            "finished_at": None}


def test_cancelling_a_job_stops_its_ray_task(sqlite_store, executor):
    job = queue.submit(sqlite_store, "sleep", {"seconds": 120, "steps": 120}, region="sa-brazil").id
    ended: list = []
    runner = threading.Thread(target=lambda: ended.append(_worker(sqlite_store, executor).run_one()))
    runner.start()
    _wait_for(lambda: "start sleep" in queue.attempt_log(sqlite_store, job, 1).read_text()
              if queue.attempt_log(sqlite_store, job, 1).is_file() else False, 90, "the stage to start on its node")
    queue.cancel(sqlite_store, job)
    runner.join(timeout=60)
    assert not runner.is_alive() and ended[0].status == "cancelled"
    assert queue.attempts(sqlite_store, job)[0].status == "cancelled"


def test_a_lost_lease_kills_the_ray_task_and_its_attempt_process(sqlite_store, executor):
    job = queue.submit(sqlite_store, "sleep", {"seconds": 120, "steps": 120}, region="eu-france").id
    log = queue.attempt_log(sqlite_store, job, 1)
    ended: list = []
    worker = Worker(sqlite_store, "ray-w", lease_s=3, poll_s=0.05, executor=executor)
    runner = threading.Thread(target=lambda: ended.append(worker.run_one()))
    runner.start()
    _wait_for(lambda: log.is_file() and "start sleep" in log.read_text(), 90, "the stage to start on its node")
    pid = int(re.search(r"attempt process (\d+):", log.read_text()).group(1))
    with sqlite_store.session() as session:  # another worker took the job over
        session.get(Job, job).lease_owner = "thief"
    runner.join(timeout=60)
    assert not runner.is_alive() and ended[0].lease_owner == "thief"
    _wait_for(lambda: not _alive(pid), 30, f"attempt process {pid} to die with its Ray task")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
def test_a_node_that_dies_mid_attempt_fails_it_as_internal_and_the_job_is_retried(sqlite_store, executor,
                                                                                   ray_cluster, monkeypatch):
    monkeypatch.setattr(queue, "BACKOFF_S", 0.0)
    doomed = ray_cluster.add_node(num_cpus=1, object_store_memory=80_000_000, labels={"region": "xx-doomed"})
    job = queue.submit(sqlite_store, "sleep", {"seconds": 120, "steps": 120}, region="xx-doomed").id
    log = queue.attempt_log(sqlite_store, job, 1)
    ended: list = []
    runner = threading.Thread(target=lambda: ended.append(_worker(sqlite_store, executor).run_one()))
    runner.start()
    try:
        _wait_for(lambda: log.is_file() and "start sleep" in log.read_text(), 90, "the stage to start on its node")
    finally:
        ray_cluster.remove_node(doomed, allow_graceful=False)
    runner.join(timeout=120)
    assert not runner.is_alive()
    attempt = queue.attempts(sqlite_store, job)[0]
    # the task's error or the worker's own recheck of the live nodes, whichever sees it first; both are retried
    assert attempt.status == "failed" and attempt.error_type in ("internal", "placement"), attempt.error
    assert "ended without a result" in attempt.error or "went away" in attempt.error
    assert ended[0].status == "queued"  # retried: its region may come back
    again = _worker(sqlite_store, executor).run_one()  # ... but it has not: refused before submission
    assert (again.id, again.error_type, again.attempts) == (job, "placement", 2)
    assert "no alive Ray node labelled region=xx-doomed" in again.error


def test_a_waiting_attempt_whose_region_has_no_live_node_is_stopped(ray_cluster):
    """Ray would keep a task whose nodes went away pending forever; the attempt rechecks and stops it."""

    def sleep_long() -> None:
        time.sleep(300)

    ref = ray.remote(sleep_long).options(num_cpus=1, label_selector={"region": "eu-france"}).remote()
    gone = queue.JobInfo(**{**_job_fields(), "region": "xx-gone"})  # as if its region's nodes had just died
    attempt = RayAttempt(ref, gone)
    attempt._checked = 0.0  # due for its recheck now
    with pytest.raises(PlacementRefused, match="region=xx-gone .*went away"):
        attempt.wait(0.1)
    with pytest.raises(ray.exceptions.RayError):  # cancelled (or its worker killed): stopped, its CPU freed
        ray.get(ref, timeout=60)


def test_internal_errors_are_retried_through_ray(sqlite_store, executor, monkeypatch):
    monkeypatch.setattr(queue, "BACKOFF_S", 0.0)
    job = queue.submit(sqlite_store, "sleep", {"fail": "internal"}, region="eu-france", max_attempts=2).id
    assert _worker(sqlite_store, executor).run(until_idle=True) == 2
    ended = queue.get_job(sqlite_store, job)
    assert (ended.status, ended.error_type, ended.attempts) == ("failed", "internal", 2)
    assert [a.exit_code for a in queue.attempts(sqlite_store, job)] == [1, 1]
    assert "RuntimeError" in queue.attempt_log(sqlite_store, job, 2).read_text()
    assert queue.retry(sqlite_store, job).status == "queued"  # a manual retry goes through Ray again
    monkeypatch.setattr(queue, "BACKOFF_S", 5.0)


def test_physics_threads_in_a_ray_task_equal_its_cpu_allocation(ray_cluster):
    """Built inside the task with the executor's options: without them MuJoCo would take every core here."""

    def threads_inside() -> dict:
        import os

        from embodia.sim import BatchSim, load_model

        return {"nthread": BatchSim(load_model("cheetah.xml"), 8).nthread, "omp": os.environ["OMP_NUM_THREADS"],
                "gl": os.environ.get("MUJOCO_GL")}

    job = queue.JobInfo(**{**_job_fields(), "region": "eu-france", "cpus": 1.0})
    inside = ray.get(ray.remote(threads_inside).options(**task_options(job)).remote(), timeout=120)
    assert inside == {"nthread": 1, "omp": "1", "gl": "egl"}


@pytest.mark.slow
def test_a_pipeline_runs_through_ray_workers_on_the_cluster(sqlite_store, executor):
    steps = {"demos": {"type": "generate", "config": {"task": "cartpole-balance", "episodes": 2, "keep": "all",
                                                      "cameras": [], "seed": 0}},
             "eval": {"type": "evaluate", "config": {"suite": "cartpole-balance", "episodes": 2,
                                                     "scenarios": ["nominal"], "videos": False, "policy": "random"}}}
    runner = PipelineRunner(parse_pipeline({"name": "t", "steps": steps}), sqlite_store, executor=executor)
    assert (runner.parallel, runner.job_cpus_max) == (2, 1)  # the cluster's CPUs, not this machine's
    results = runner.run()
    assert {name: r.status for name, r in results.items()} == {"demos": "ran", "eval": "ran"}, results
    for result in results.values():
        job = registry.get_artifact(sqlite_store, result.output.sha256).creator_job_id
        assert _ran_on(sqlite_store, job)[0] in {n["NodeID"] for n in ray.nodes()}
