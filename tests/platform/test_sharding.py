"""Shards as Ray tasks on the local two-node cluster (embodia.platform.sharding): sharded generation equals the
one-process dataset bit for bit; random actions and keep=success repeat across 1/2/3 shards; sharded evaluation
equals the unsharded report."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from embodia.core.errors import UserError
from embodia.data.generate import GenerateConfig, run
from embodia.evaluate.suite import load_suite
from embodia.platform.jobtypes import get_job_type
from embodia.platform.sharding import ray_map, run_evaluate, run_generate, shard_map


def file_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file of a stage output except its manifest (which records times and the config)."""
    return {str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*")) if path.is_file() and path.name != "manifest.json"}


def test_the_generate_and_evaluate_jobs_shard_on_ray_when_connected(ray_cluster):
    assert get_job_type("generate") is run_generate and get_job_type("evaluate") is run_evaluate
    assert shard_map() is ray_map


def test_sharded_generation_on_ray_equals_a_one_process_run_bit_for_bit(ray_cluster, tmp_path):
    config = GenerateConfig(task="arm-pick-place", episodes=4, cameras=["front"], image_size=32, envs_per_worker=2,
                            policy="expert", keep="all", seed=3)
    single = run(config, tmp_path / "single")
    sharded = run_generate(config.model_copy(update={"shards": 2}).model_dump(mode="json"), tmp_path / "sharded")
    assert sharded.summary["shards"] == 2 and sharded.summary["episodes"] == 4
    assert sharded.content_sha256 == single.content_sha256
    assert file_hashes(tmp_path / "sharded") == file_hashes(tmp_path / "single")
    assert not list(tmp_path.glob(".*.partial"))  # shards lived in the staging directory and left with it


def test_random_keep_success_repeats_across_one_two_and_three_shards_on_ray(ray_cluster, tmp_path):
    config = GenerateConfig(task="arm-reach", episodes=2, keep="success", policy="random", envs_per_worker=4, seed=0,
                            max_attempts_factor=40)
    digests = {shards: run(config.model_copy(update={"shards": shards}), tmp_path / f"s{shards}",
                           map_shards=ray_map).content_sha256 for shards in (1, 2, 3)}
    assert len(set(digests.values())) == 1, digests


def test_a_shard_error_on_a_node_is_one_user_error_here(ray_cluster, tmp_path):
    config = GenerateConfig(task="arm-reach", episodes=2, shards=2)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "stray.txt").write_text("not a shard")
    from embodia.data.generate import generate_shard

    with pytest.raises(UserError, match="not empty and is not an embodia dataset") as caught:
        ray_map(generate_shard, [(config, range(1), str(tmp_path / "busy"))])
    assert "Traceback" not in str(caught.value)


def _small_suite() -> dict:
    suite = load_suite("arm-reach").model_dump(mode="json")
    suite["video"] = {**suite["video"], "width": 64, "height": 48}
    return suite


def test_sharded_evaluation_on_ray_equals_the_unsharded_report(ray_cluster, tmp_path):
    config = {"suite": _small_suite(), "episodes": 5, "scenarios": ["nominal", "push", "latency"],
              "policy": "expert:arm-reach"}
    unsharded = run_evaluate(config, tmp_path / "one")
    sharded = run_evaluate({**config, "shards": 3}, tmp_path / "three")
    assert sharded.summary["success_rate"] == unsharded.summary["success_rate"]
    # per-episode outcomes, summaries and the replays behind the videos: the same bytes
    assert (tmp_path / "three" / "results.json").read_bytes() == (tmp_path / "one" / "results.json").read_bytes()
    names = sorted(file_hashes(tmp_path / "three"))
    assert names == sorted(file_hashes(tmp_path / "one"))
    assert sum(name.startswith("videos/") for name in names) == 6  # best and worst per scenario, rendered once


@pytest.mark.slow
def test_a_pipeline_step_with_shards_runs_them_as_ray_tasks_and_registers_the_one_process_dataset(
        ray_cluster, sqlite_store, tmp_path):
    from embodia.platform import queue, registry
    from embodia.platform.pipeline import parse_pipeline
    from embodia.platform.ray_executor import RayExecutor
    from embodia.platform.runner import PipelineRunner

    config = {"task": "arm-reach", "episodes": 4, "envs_per_worker": 2, "cameras": ["front"], "image_size": 32,
              "policy": "expert", "seed": 2}
    steps = {"demos": {"type": "generate", "config": {**config, "shards": 2}}}
    results = PipelineRunner(parse_pipeline({"name": "sharded", "steps": steps}), sqlite_store,
                             executor=RayExecutor()).run()
    assert results["demos"].status == "ran", results
    artifact = registry.get_artifact(sqlite_store, results["demos"].output.sha256)
    log = queue.attempt_log(sqlite_store, artifact.creator_job_id, 1).read_text()
    assert "shards run as Ray tasks on the cluster" in log, log
    assert queue.get_job(sqlite_store, artifact.creator_job_id).cpus < 1  # the coordinator waits; shards hold CPUs
    single = run(GenerateConfig(**config), tmp_path / "single")
    assert artifact.sha256 == single.content_sha256  # registered by content: the one-process dataset's hash
