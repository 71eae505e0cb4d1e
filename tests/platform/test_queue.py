"""Durable job queue: priorities, leases, heartbeats, reclaiming, retries of internal errors only, quotas,
cancellation and concurrent claims, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time

import pytest

from embodia.core.errors import UserError
from embodia.platform import queue
from embodia.platform.queue import Outcome


def _drain(store, worker="w"):
    claims = []
    while (claim := queue.claim(store, worker)) is not None:
        claims.append(claim)
        queue.finish(store, claim.job.id, worker, Outcome("succeeded"))
    return [c.job.id for c in claims]


def test_higher_priority_first_then_first_in_first_out(store):
    low = queue.submit(store, "noop", priority=0).id
    high = queue.submit(store, "noop", priority=5).id
    low2 = queue.submit(store, "noop", priority=0).id
    assert _drain(store) == [high, low, low2]
    assert {queue.get_job(store, j).status for j in (low, high, low2)} == {"succeeded"}


def test_claim_records_an_attempt_and_heartbeats_extend_the_lease(store):
    job = queue.submit(store, "sleep", {"seconds": 1}, cpus=2)
    claim = queue.claim(store, "w1", lease_s=30)
    assert (claim.job.id, claim.attempt, claim.job.status, claim.job.lease_owner) == (job.id, 1, "running", "w1")
    assert claim.log_path.name == "attempt-1.log" and f"job-{job.id}" in str(claim.log_path)
    assert queue.claim(store, "w2") is None  # held, lease valid
    before = queue.get_job(store, job.id).lease_expires_at
    assert queue.heartbeat(store, job.id, "w1", lease_s=60, metrics={"loss": 0.5}) == "ok"
    after = queue.get_job(store, job.id)
    assert after.lease_expires_at > before and after.metrics == {"loss": 0.5}
    assert queue.heartbeat(store, job.id, "w2") == "lost"
    attempts = queue.attempts(store, job.id)
    assert [(a.number, a.worker, a.status) for a in attempts] == [(1, "w1", "running")]


def test_an_expired_lease_is_reclaimed_and_the_old_holder_loses_the_job(store):
    job = queue.submit(store, "noop")
    queue.claim(store, "w1", lease_s=0.05)
    time.sleep(0.1)
    second = queue.claim(store, "w2", lease_s=30)
    assert (second.job.id, second.attempt) == (job.id, 2)
    assert queue.heartbeat(store, job.id, "w1") == "lost"
    assert queue.finish(store, job.id, "w1", Outcome("succeeded")) is None
    assert not queue.record_output(store, job.id, "w1", "a" * 64)
    done = queue.finish(store, job.id, "w2", Outcome("succeeded", cpu_seconds=1.5))
    assert done.status == "succeeded" and done.cpu_seconds == 1.5
    assert [(a.worker, a.status, a.error_type) for a in queue.attempts(store, job.id)] == [
        ("w1", "lost", "lost"), ("w2", "succeeded", None)]


def test_a_job_whose_worker_is_lost_every_time_fails(store):
    job = queue.submit(store, "noop", max_attempts=1)
    queue.claim(store, "w1", lease_s=0.05)
    time.sleep(0.1)
    assert queue.claim(store, "w2") is None
    failed = queue.get_job(store, job.id)
    assert failed.status == "failed" and failed.error_type == "lost"


def test_a_job_cancelled_while_its_worker_was_lost_is_not_run_again(store):
    job = queue.submit(store, "noop").id
    queue.claim(store, "w1", lease_s=0.05)
    queue.cancel(store, job)
    time.sleep(0.1)
    assert queue.claim(store, "w2") is None
    assert queue.get_job(store, job).status == "cancelled"


def test_internal_errors_are_retried_with_backoff_and_user_errors_are_not(store):
    internal = queue.submit(store, "noop", max_attempts=2).id
    queue.claim(store, "w")
    retried = queue.finish(store, internal, "w", Outcome("failed", "internal", "boom", 1))
    assert retried.status == "queued" and retried.not_before is not None
    assert queue.claim(store, "w") is None  # still backing off
    assert queue.backoff_s(1) == queue.BACKOFF_S and queue.backoff_s(3) == 4 * queue.BACKOFF_S
    assert queue.backoff_s(50) == queue.MAX_BACKOFF_S
    _expire_backoff(store, internal)
    claim = queue.claim(store, "w")
    assert claim.attempt == 2
    final = queue.finish(store, internal, "w", Outcome("failed", "internal", "boom again", 1))
    assert (final.status, final.error, final.attempts) == ("failed", "boom again", 2)

    user = queue.submit(store, "noop", max_attempts=5).id
    queue.claim(store, "w")
    failed = queue.finish(store, user, "w", Outcome("failed", "user", "bad config field x", 2))
    assert (failed.status, failed.error_type, failed.attempts) == ("failed", "user", 1)

    again = queue.retry(store, user)
    assert again.status == "queued" and again.error is None
    with pytest.raises(UserError, match="only failed or cancelled"):
        queue.retry(store, user)


def _expire_backoff(store, job_id):
    from embodia.platform.models import Job, utcnow

    with store.session() as session:
        session.get(Job, job_id).not_before = utcnow()


def test_cancellation_of_queued_and_running_jobs(store):
    queued = queue.submit(store, "noop").id
    running = queue.submit(store, "noop", priority=1).id
    queue.claim(store, "w")
    assert queue.cancel(store, queued).status == "cancelled"
    assert queue.claim(store, "w") is None  # the cancelled one is never claimed
    flagged = queue.cancel(store, running)
    assert flagged.status == "running" and flagged.cancel_requested and queue.cancel_requested(store, running)
    assert queue.heartbeat(store, running, "w") == "cancel"
    ended = queue.finish(store, running, "w", Outcome("cancelled", "cancelled", "cancelled", 3))
    assert ended.status == "cancelled"
    with pytest.raises(UserError, match="already ended"):
        queue.cancel(store, running)
    with pytest.raises(UserError, match="does not exist"):
        queue.cancel(store, 999)


def test_a_stopping_worker_releases_its_job_without_using_an_attempt(store):
    job = queue.submit(store, "noop", max_attempts=1).id
    queue.claim(store, "w1")
    assert queue.release(store, job, "w2", "not mine") is None
    released = queue.release(store, job, "w1", "worker stopped")
    assert (released.status, released.lease_owner, released.max_attempts) == ("queued", None, 2)
    assert queue.claim(store, "w2").attempt == 2
    assert [a.status for a in queue.attempts(store, job)] == ["released", "running"]


def test_cancel_wins_over_a_retry(store):
    job = queue.submit(store, "noop").id
    queue.claim(store, "w")
    queue.cancel(store, job)
    assert queue.finish(store, job, "w", Outcome("failed", "internal", "x", 1)).status == "failed"


def test_concurrency_quota_limits_running_jobs_per_project(store):
    queue.set_quota(store, "a", max_concurrent=1)
    a1, a2 = queue.submit(store, "noop", project="a", priority=9).id, queue.submit(store, "noop", project="a").id
    b1 = queue.submit(store, "noop", project="b").id
    assert queue.claim(store, "w1").job.id == a1
    assert queue.claim(store, "w2").job.id == b1  # a is at its limit
    assert queue.claim(store, "w3") is None
    queue.finish(store, a1, "w1", Outcome("succeeded"))
    assert queue.claim(store, "w3").job.id == a2


def test_cpu_hours_quota_stops_claims_once_used_up(store):
    queue.set_quota(store, "a", cpu_hours=1.0)
    first = queue.submit(store, "noop", project="a").id
    second = queue.submit(store, "noop", project="a").id
    queue.claim(store, "w")
    queue.finish(store, first, "w", Outcome("succeeded", cpu_seconds=3600.0))
    assert queue.claim(store, "w") is None
    queue.set_quota(store, "a", cpu_hours=2.0)
    assert queue.claim(store, "w").job.id == second
    with pytest.raises(UserError, match="cpu_hours"):
        queue.set_quota(store, "a", cpu_hours=float("nan"))


def test_concurrent_claims_take_each_job_exactly_once(store):
    jobs = {queue.submit(store, "noop").id for _ in range(40)}
    queue.set_quota(store, "default", max_concurrent=100)
    taken: list[int] = []
    lock = threading.Lock()

    def work(name):
        while (claim := queue.claim(store, name)) is not None:
            with lock:
                taken.append(claim.job.id)
            queue.finish(store, claim.job.id, name, Outcome("succeeded"))

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(taken) == sorted(jobs)
    assert {j.status for j in queue.list_jobs(store, limit=None)} == {"succeeded"}


def test_submit_checks_its_arguments(store):
    with pytest.raises(UserError, match="unknown job type 'nope'"):
        queue.submit(store, "nope")
    with pytest.raises(UserError, match="cpus"):
        queue.submit(store, "noop", cpus=float("inf"))
    with pytest.raises(UserError, match="max_attempts"):
        queue.submit(store, "noop", max_attempts=0)
    assert queue.list_jobs(store) == []


def test_jobs_carry_their_region_and_placement_explanation(store):
    placed = queue.submit(store, "generate", {"task": "arm-reach"}, region="eu-france")
    assert placed.region == "eu-france" and placed.placement is None
    free = queue.submit(store, "generate", {"task": "arm-reach"})
    assert free.region is None
    why = {"region": "sa-brazil", "rejected": {"eu-france": "residency: dataset BR may not leave BR"}}
    moved = queue.set_placement(store, free.id, "sa-brazil", why)
    assert queue.get_job(store, free.id).region == "sa-brazil" and moved.placement == why
    held = queue.set_placement(store, placed.id, None, {"reason": "no legal region"}, hold=True)
    assert held.status == "held" and held.region is None and held.placement == {"reason": "no legal region"}
    assert queue.claim(store, "w").job.id == free.id and queue.claim(store, "w") is None  # held: never claimed
    back = queue.set_placement(store, placed.id, "eu-france", {"region": "eu-france"})
    assert back.status == "queued" and back.region == "eu-france"
    assert queue.claim(store, "w").job.id == placed.id
    with pytest.raises(UserError, match="region='eu france'"):
        queue.submit(store, "generate", {}, region="eu france")
    assert queue.set_placement(store, free.id, "eu-netherlands", {}).status == "running"  # failover moves it
    queue.finish(store, free.id, "w", Outcome("succeeded"))
    with pytest.raises(UserError, match="already ended"):
        queue.set_placement(store, free.id, "eu-france", {})
    other = queue.submit(store, "generate", {})
    queue.set_placement(store, other.id, None, {"reason": "x"}, hold=True)
    assert queue.cancel(store, other.id).status == "cancelled"
