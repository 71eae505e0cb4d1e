"""Placement against the workspace: residency from registry lineage, decisions on job rows, failover, restore."""

from __future__ import annotations

import pytest

from embodia.core.errors import UserError
from embodia.core.stage import StageResult, run_stage, staging_dir
from embodia.platform import queue, registry
from embodia.platform.regions.scheduler import (
    explain_job,
    fail_region,
    load_rules,
    place_queued,
    region_status,
    restore_region,
)
from embodia.platform.runjob import job_output_dir


def _dataset(store, tmp_path, name, jurisdiction=None, inputs=None):
    def body(staging, reporter):
        (staging / "data.txt").write_text(name * 100)
        return StageResult(seeds=[0], summary={})
    run_stage("generate", "dataset", {"name": name}, tmp_path / name, body, inputs=inputs)
    return registry.register_artifact(store, tmp_path / name, jurisdiction=jurisdiction)


def _checkpoint_on_disk(store, job_id):
    staging = staging_dir(job_output_dir(store, job_id))
    (staging / "checkpoints" / "step_000100").mkdir(parents=True)
    (staging / "checkpoints" / "step_000100" / "model.safetensors").write_bytes(b"weights")
    (staging / "checkpoints" / "latest").write_text("step_000100")


def test_queued_jobs_are_placed_within_the_residency_their_inputs_inherit(store, tmp_path):
    rules = load_rules(store)
    _dataset(store, tmp_path, "raw", "BR")
    derived = _dataset(store, tmp_path, "clean", inputs={"raw": tmp_path / "raw"})  # no tag given: inherits BR
    assert derived.jurisdiction == "BR"
    train = queue.submit(store, "train", {}, inputs={"dataset": derived.ref})
    free = queue.submit(store, "generate", {}, cpus=4)
    decision = place_queued(store, rules)
    assert decision.method == "milp" and decision.counts() == {"placed": 2, "held": 0, "waiting": 0}
    train, free = queue.get_job(store, train.id), queue.get_job(store, free.id)
    assert train.region == "sa-brazil" and train.placement["kind"] in ("a100", "l4")
    assert train.placement["data"]["jurisdictions"] == ["BR"]
    assert "data residency" in train.placement["rejected"]["eu-france"]
    assert free.region == "home" and free.placement["needs"]["units"] == 4  # free CPUs at home, data already there
    assert explain_job(store, rules, train.id) == train.placement


def test_failover_moves_queued_and_checkpointed_jobs_and_holds_what_has_nowhere_legal(store, tmp_path):
    rules = load_rules(store)
    br = _dataset(store, tmp_path, "raw", "BR")
    eu = _dataset(store, tmp_path, "eu", "EU")
    stuck = queue.submit(store, "train", {}, inputs={"dataset": br.ref})
    checkpointed = queue.submit(store, "train", {}, inputs={"dataset": eu.ref})
    plain = queue.submit(store, "train", {}, inputs={"dataset": eu.ref})
    place_queued(store, rules)
    assert {queue.get_job(store, j.id).region for j in (checkpointed, plain)} == {"eu-netherlands"}
    assert queue.claim(store, "w1").job.id == stuck.id
    assert queue.claim(store, "w2").job.id == checkpointed.id
    _checkpoint_on_disk(store, checkpointed.id)  # what a training stage leaves in its staging output
    queue.heartbeat(store, checkpointed.id, "w2", metrics={"step": 100})  # metrics alone do not make it movable
    queue.release(store, stuck.id, "w1", "test")  # queued again, in sa-brazil
    report = fail_region(store, rules, "sa-brazil")
    assert region_status(store) == {"sa-brazil": "down"}
    assert report["moved"] == 1 and report["held"] == 1
    held = queue.get_job(store, stuck.id)
    assert held.status == "held" and held.region is None
    assert held.placement["reason"].startswith("held: no region satisfies")
    assert held.placement["rejected"]["sa-brazil"] == "region is down"
    assert queue.claim(store, "w3").job.id == plain.id and queue.claim(store, "w3") is None  # held: not claimed
    assert queue.get_job(store, plain.id).status == "running"
    moved = fail_region(store, rules, "eu-netherlands")
    assert moved["moved"] == 1 and moved["placed"] == 1 and moved["running_without_checkpoint"] == [plain.id]
    assert "no checkpoint in" in moved["not_moved"][plain.id] and f"job-{plain.id}" in moved["not_moved"][plain.id]
    assert queue.get_job(store, plain.id).status == "running"  # not moved: retried when its lease expires
    resumed = queue.get_job(store, checkpointed.id)
    assert resumed.status == "queued" and resumed.region == "eu-france"  # resumes from its checkpoint there
    assert queue.attempts(store, checkpointed.id)[-1].status == "released"
    back = restore_region(store, rules, "sa-brazil")
    assert back["held"] == 0 and queue.get_job(store, stuck.id).status == "queued"
    assert queue.get_job(store, stuck.id).region == "sa-brazil"


def test_unknown_regions_and_never_placed_jobs_are_one_line_errors(store):
    rules = load_rules(store)
    with pytest.raises(UserError, match="unknown region 'xx-nowhere'; known regions: home"):
        fail_region(store, rules, "xx-nowhere")
    job = queue.submit(store, "generate", {})
    preview = explain_job(store, rules, job.id)
    assert preview["decision"] == "placed" and "not placed yet" in preview["note"]
    assert queue.get_job(store, job.id).region is None  # a preview records nothing
    queue.cancel(store, job.id)
    with pytest.raises(UserError, match="was never placed"):
        explain_job(store, rules, job.id)
