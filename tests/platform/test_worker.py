"""Workers: each attempt in its own process, outputs registered exactly once, errors classified, cancellation,
and a worker killed with SIGKILL whose job another worker resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from embodia.platform import queue, registry
from embodia.platform.models import Job, utcnow
from embodia.platform.runjob import EXIT_DONE, run_attempt
from embodia.platform.worker import Worker, thread_env

REPO = Path(__file__).resolve().parents[2]


def _worker_process(store, *args: str) -> subprocess.Popen:
    """`embodia worker` started as `nohup embodia worker &` from a script starts it: with SIGINT ignored (the worker
    must turn Ctrl-C back on itself)."""
    env = {**os.environ, "EMBODIA_HOME": str(store.home), "EMBODIA_DB_URL": store.url,
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-m", "embodia", "worker", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))


def _wait_for(condition, timeout_s: float = 90.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_thread_counts_follow_the_cpu_allocation():
    assert thread_env(4)["OMP_NUM_THREADS"] == "4" and thread_env(0.5)["MKL_NUM_THREADS"] == "1"


def test_worker_runs_jobs_in_processes_and_registers_outputs_with_lineage(store):
    first = queue.submit(store, "sleep", {"seconds": 0.2, "steps": 2, "message": "raw"}, cpus=2).id
    worker = Worker(store, "w", lease_s=10, poll_s=0.1)
    done = worker.run_one()
    assert (done.id, done.status, done.attempts) == (first, "succeeded", 1)
    data = registry.artifact_of_job(store, first)
    assert data.sha256 == done.output_sha256 and (data.path / "message.txt").read_text() == "raw"
    log = queue.attempt_log(store, first, 1).read_text()
    assert "start sleep: 2 steps" in log and "registered other:sha256:" in log
    assert "2 cpus, OMP_NUM_THREADS=2" in log  # thread counts follow the job's CPU allocation
    second = queue.submit(store, "sleep", {"message": "derived"}, inputs={"source": data.ref}).id
    assert worker.run(until_idle=True) == 1
    derived = registry.artifact_of_job(store, second)
    assert [(i.name, i.sha256) for i in derived.inputs] == [("source", data.sha256)]
    assert registry.descendants(store, data.ref).children[0].sha256 == derived.sha256
    attempt = queue.attempts(store, first)[0]
    assert attempt.status == "succeeded" and attempt.cpu_seconds > 0 and attempt.exit_code == 0


def test_user_errors_fail_at_once_and_internal_errors_are_retried(sqlite_store, monkeypatch):
    monkeypatch.setattr(queue, "BACKOFF_S", 0.0)
    user = queue.submit(sqlite_store, "sleep", {"fail": "user"}, max_attempts=3).id
    internal = queue.submit(sqlite_store, "sleep", {"fail": "internal"}, max_attempts=2).id
    Worker(sqlite_store, "w", lease_s=10, poll_s=0.05).run(until_idle=True)
    user_job, internal_job = queue.get_job(sqlite_store, user), queue.get_job(sqlite_store, internal)
    assert (user_job.status, user_job.error_type, user_job.attempts) == ("failed", "user", 1)
    assert "config fail=user" in user_job.error
    assert (internal_job.status, internal_job.error_type, internal_job.attempts) == ("failed", "internal", 2)
    assert [a.exit_code for a in queue.attempts(sqlite_store, internal)] == [1, 1]
    assert "RuntimeError" in queue.attempt_log(sqlite_store, internal, 2).read_text()  # the traceback is logged
    assert registry.list_artifacts(sqlite_store) == []


def test_an_output_registered_by_a_lost_attempt_is_not_registered_again(store):
    job = queue.submit(store, "sleep", {"message": "once"}).id
    queue.claim(store, "w1")
    code, first = run_attempt(store, job, 1, "w1")
    assert code == EXIT_DONE
    with store.session() as session:  # w1 dies before telling the queue
        session.get(Job, job).lease_expires_at = utcnow()
    claim = queue.claim(store, "w2")
    code, second = run_attempt(store, job, claim.attempt, "w2")
    assert code == EXIT_DONE and second["output_sha256"] == first["output_sha256"]
    assert len(registry.list_artifacts(store)) == 1
    assert queue.finish(store, job, "w2", queue.Outcome("succeeded")).output_sha256 == first["output_sha256"]


@pytest.mark.slow
def test_cancelling_a_running_job_stops_its_stage(sqlite_store):
    job = queue.submit(sqlite_store, "sleep", {"seconds": 60, "steps": 600}).id
    process = _worker_process(sqlite_store, "--until-idle", "--lease-s", "3", "--poll-s", "0.2")
    try:
        log = queue.attempt_log(sqlite_store, job, 1)
        _wait_for(lambda: log.is_file() and "progress" in log.read_text(), what="the sleep job to start")
        queue.cancel(sqlite_store, job)
        assert process.wait(timeout=60) == 0
    finally:
        process.kill()
    ended = queue.get_job(sqlite_store, job)
    assert ended.status == "cancelled" and queue.attempts(sqlite_store, job)[0].status == "cancelled"
    assert registry.list_artifacts(sqlite_store) == []


@pytest.mark.slow
def test_a_worker_killed_with_sigkill_loses_its_job_to_another_that_resumes_it(store):
    steps = 30
    job = queue.submit(store, "counter", {"steps": steps, "step_s": 0.15}).id
    progress = store.path("jobs", f"job-{job}", ".out.partial", "progress")

    def done_steps() -> int:
        return len(list(progress.glob("step-*"))) if progress.is_dir() else 0

    killed = _worker_process(store, "--lease-s", "2", "--poll-s", "0.2")
    try:
        _wait_for(lambda: done_steps() >= 5, what="the counter job to make progress")
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=30)
    finally:
        killed.kill()
    at_kill = done_steps()
    time.sleep(1.0)
    assert done_steps() <= at_kill + 1, "the attempt process outlived its killed worker"
    assert at_kill < steps

    finished = Worker(store, "survivor", lease_s=10, poll_s=0.2).run(max_jobs=1)
    assert finished == 1
    ended = queue.get_job(store, job)
    assert (ended.status, ended.attempts) == ("succeeded", 2)
    assert [a.status for a in queue.attempts(store, job)] == ["lost", "succeeded"]
    artifacts = registry.list_artifacts(store)
    assert len(artifacts) == 1 and artifacts[0].creator_job_id == job
    assert artifacts[0].manifest["summary"]["resumed_from"] >= at_kill - 1 > 0
    stored = sorted(p.name for p in (artifacts[0].path / "progress").iterdir())
    assert stored == sorted(f"step-{i}" for i in range(steps))


@pytest.mark.slow
def test_a_real_stage_runs_as_a_job_and_its_report_is_registered(sqlite_store):
    config = {"suite": "cartpole-balance", "episodes": 2, "scenarios": ["nominal"], "videos": False,
              "policy": "random"}
    job = queue.submit(sqlite_store, "evaluate", config).id
    ended = Worker(sqlite_store, "w", lease_s=30, poll_s=0.1).run_one()
    assert ended.status == "succeeded", queue.attempt_log(sqlite_store, job, 1).read_text()
    report = registry.artifact_of_job(sqlite_store, job)
    assert (report.kind, report.stage) == ("report", "evaluate")
    assert report.manifest["config"]["policy"] == "random" and (report.path / "results.json").is_file()


RL_CONFIG = {"algo": "ppo", "task": "cartpole-balance", "seed": 2, "total_steps": 6144, "num_envs": 8,
             "num_steps": 16, "num_minibatches": 2, "update_epochs": 2, "checkpoint_every": 1024,
             "tensorboard": False, "progress": False}


@pytest.mark.slow
def test_an_rl_job_killed_mid_run_resumes_from_its_last_checkpoint(sqlite_store, tmp_path):
    from embodia.learn import train

    job = queue.submit(sqlite_store, "train", RL_CONFIG).id
    latest = sqlite_store.path("jobs", f"job-{job}", ".out.partial", "checkpoints", "latest")
    killed = _worker_process(sqlite_store, "--lease-s", "2", "--poll-s", "0.2")
    try:
        _wait_for(lambda: latest.is_file(), what="the first RL checkpoint")
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=30)
    finally:
        killed.kill()
    resumed_at = latest.read_text().strip()
    assert resumed_at != "final", "the run finished before the kill; raise total_steps"

    assert Worker(sqlite_store, "survivor", lease_s=10, poll_s=0.2).run(max_jobs=1) == 1
    ended = queue.get_job(sqlite_store, job)
    assert ended.status == "succeeded", queue.attempt_log(sqlite_store, job, 2).read_text()
    assert [a.status for a in queue.attempts(sqlite_store, job)] == ["lost", "succeeded"]
    [artifact] = registry.list_artifacts(sqlite_store)
    assert artifact.creator_job_id == job and (artifact.path / "checkpoints" / "final").is_dir()
    uninterrupted = train.run(RL_CONFIG, tmp_path / "uninterrupted")
    assert artifact.sha256 == uninterrupted.content_sha256  # resumed bit-for-bit from the checkpoint


@pytest.mark.slow
def test_ctrl_c_on_a_worker_hands_its_job_back_with_the_partial_work(sqlite_store):
    job = queue.submit(sqlite_store, "counter", {"steps": 30, "step_s": 0.15}, max_attempts=1).id
    progress = sqlite_store.path("jobs", f"job-{job}", ".out.partial", "progress")
    stopped = _worker_process(sqlite_store, "--lease-s", "30", "--poll-s", "0.2")
    try:
        _wait_for(lambda: progress.is_dir() and len(list(progress.iterdir())) >= 3, what="counter progress")
        stopped.send_signal(signal.SIGINT)
        assert stopped.wait(timeout=60) == 0
    finally:
        stopped.kill()
    released = queue.get_job(sqlite_store, job)
    assert (released.status, released.lease_owner) == ("queued", None)  # back at once, no lease to wait out
    assert Worker(sqlite_store, "next", lease_s=10, poll_s=0.1).run(until_idle=True) == 1
    ended = queue.get_job(sqlite_store, job)
    assert ended.status == "succeeded" and [a.status for a in queue.attempts(sqlite_store, job)] == [
        "released", "succeeded"]
    assert registry.artifact_of_job(sqlite_store, job).manifest["summary"]["resumed_from"] >= 3


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_worker_slots_run_jobs_side_by_side_and_ctrl_c_hands_each_back(sqlite_store, stop_signal):
    jobs = [queue.submit(sqlite_store, "counter", {"steps": 40, "step_s": 0.15}, max_attempts=1).id for _ in "ab"]
    progress = [sqlite_store.path("jobs", f"job-{job}", ".out.partial", "progress") for job in jobs]
    stopped = _worker_process(sqlite_store, "--lease-s", "3", "--poll-s", "0.2", "--slots", "2")
    try:
        _wait_for(lambda: all(p.is_dir() and len(list(p.iterdir())) >= 2 for p in progress),
                  what="both counters progressing at once")
        stopped.send_signal(stop_signal)
        assert stopped.wait(timeout=60) == 0
    finally:
        stopped.kill()
    for job in jobs:
        released = queue.get_job(sqlite_store, job)
        assert (released.status, released.lease_owner) == ("queued", None)
        assert [a.status for a in queue.attempts(sqlite_store, job)] == ["released"]


def test_a_database_hiccup_does_not_stop_a_worker(sqlite_store, monkeypatch):
    from sqlalchemy.exc import OperationalError

    from embodia.platform import worker as worker_module

    calls = []

    def flaky_claim(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("SELECT", {}, Exception("connection reset"))
        return None

    monkeypatch.setattr(worker_module, "DB_RETRY_S", 0.0)
    monkeypatch.setattr(queue, "claim", flaky_claim)
    assert Worker(sqlite_store, "w").run(until_idle=True) == 0
    assert len(calls) == 2
