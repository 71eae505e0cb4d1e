"""Generation shards (embodia.data.generate): disjoint attempt ranges merged into the one-process dataset, bit for bit;
random actions and keep=success give the same dataset for any number of workers or shards; bad shard sets refused."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from embodia.core.errors import ConfigError, UserError
from embodia.data.generate import GenerateConfig, generate_shard, merge_shards, run
from embodia.data.reader import Dataset


def file_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file of a stage output except its manifest (which records times and the config)."""
    return {str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*")) if path.is_file() and path.name != "manifest.json"}


def _reach(**changes) -> GenerateConfig:
    return GenerateConfig(**{"task": "arm-reach", "episodes": 5, "envs_per_worker": 2, "seed": 7, **changes})


def test_merged_shards_equal_a_one_process_run_bit_for_bit(tmp_path):
    config = _reach(cameras=["front"], image_size=32, policy="expert")
    single = run(config, tmp_path / "single")
    shards = [tmp_path / "shard-a", tmp_path / "shard-b", tmp_path / "shard-c"]
    generate_shard(config, range(4, 5), shards[2])  # any order, any node, one attempt or many: only ranges matter
    generate_shard(config, range(3), shards[0])
    generate_shard(config, range(3, 4), shards[1])
    merged = merge_shards(shards, tmp_path / "merged")
    assert merged.content_sha256 == single.content_sha256
    hashes = file_hashes(tmp_path / "merged")
    assert hashes == file_hashes(tmp_path / "single")
    assert any(name.startswith("videos/") for name in hashes) and any(name.startswith("data/") for name in hashes)
    assert list(Dataset(tmp_path / "merged").episodes_table["embodia/attempt"]) == [0, 1, 2, 3, 4]


def test_random_keep_success_is_the_same_dataset_for_any_workers_or_shards(tmp_path):
    """The first 2 successes in attempt order, random actions drawn from (episode seed, step): one dataset."""
    config = _reach(episodes=2, keep="success", policy="random", envs_per_worker=4, seed=0,
                     max_attempts_factor=40)
    digests = {}
    for name, changes in {"one": {}, "workers2": {"workers": 2}, "shards2": {"shards": 2},
                          "shards3": {"shards": 3, "envs_per_worker": 2}}.items():
        digests[name] = run(config.model_copy(update=changes), tmp_path / name).content_sha256
    assert len(set(digests.values())) == 1, digests
    attempts = list(Dataset(tmp_path / "one").episodes_table["embodia/attempt"])
    assert len(attempts) == 2 and attempts[-1] > 2  # random reaching rarely succeeds: attempts were filtered


def test_merge_refuses_overlapping_or_missing_attempts_and_other_settings(tmp_path):
    config = _reach(episodes=3)
    generate_shard(config, range(2), tmp_path / "a")
    generate_shard(config, range(1, 3), tmp_path / "b")
    generate_shard(config, range(2, 3), tmp_path / "c")
    generate_shard(config.model_copy(update={"seed": 8}), range(2, 3), tmp_path / "other-seed")
    with pytest.raises(UserError, match="attempt 1 is in shards .*a and .*b"):
        merge_shards([tmp_path / "a", tmp_path / "b"], tmp_path / "out")
    with pytest.raises(UserError, match="attempts 2 are in no shard"):
        merge_shards([tmp_path / "a"], tmp_path / "out")
    with pytest.raises(ConfigError, match="--seed=7 vs --seed=8"):
        merge_shards([tmp_path / "a", tmp_path / "other-seed"], tmp_path / "out")
    with pytest.raises(UserError, match="not a generation shard"):
        merge_shards([tmp_path / "a", tmp_path], tmp_path / "out")
    assert not (tmp_path / "out").exists()
    merge_shards([tmp_path / "c", tmp_path / "a"], tmp_path / "out")
    assert Dataset(tmp_path / "out").num_episodes == 3


def test_keep_success_merge_needs_every_attempt_before_the_last_kept_one(tmp_path):
    config = _reach(episodes=1, keep="success", policy="random", seed=0)
    generate_shard(config, range(40), tmp_path / "all")
    kept = sorted(int(p.name) for p in (tmp_path / "all" / ".staging" / "episodes").iterdir())
    assert kept, "random reaching succeeded in none of 40 attempts"
    generate_shard(config, range(kept[0], kept[0] + 1), tmp_path / "only-the-success")
    with pytest.raises(UserError, match="rolled out by no shard, so the first 1 successes are not known"):
        merge_shards([tmp_path / "only-the-success"], tmp_path / "out")
