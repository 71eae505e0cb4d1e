import numpy as np
import pytest
import torch

from embodia.core.errors import CheckpointError
from embodia.learn.checkpoint import load_checkpoint, resolve_checkpoint, save_run_checkpoint


def _save(run_dir, name, value=1.0, keep=3):
    return save_run_checkpoint(run_dir, name, model={"w": torch.full((2, 2), value)}, config={"algo": "ppo"},
                           normalizer={"obs_mean": np.zeros(3)}, optimizer={"step": 1}, state={"global_step": 5},
                           env_state={"next_obs": np.ones((2, 3))}, keep=keep)


def test_save_then_load_round_trips_every_part(tmp_path):
    _save(tmp_path, "step_000000000010", 2.0)
    loaded = load_checkpoint(tmp_path)
    assert loaded["path"].name == "step_000000000010"
    assert torch.equal(loaded["model"]["w"], torch.full((2, 2), 2.0))
    assert loaded["state"]["global_step"] == 5 and loaded["optimizer"]["step"] == 1
    np.testing.assert_array_equal(loaded["env_state"]["next_obs"], np.ones((2, 3)))


def test_latest_points_at_newest_and_old_step_checkpoints_are_pruned(tmp_path):
    for step in range(5):
        _save(tmp_path, f"step_{step:012d}", float(step), keep=2)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.is_dir())
    assert names == ["step_000000000003", "step_000000000004"]
    assert resolve_checkpoint(tmp_path).name == "step_000000000004"
    assert not list((tmp_path / "checkpoints").glob(".*tmp*"))


def test_corrupt_weights_file_is_named_in_the_error(tmp_path):
    ckpt = _save(tmp_path, "final")
    (ckpt / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match=r"model\.safetensors is corrupt"):
        load_checkpoint(ckpt)


def test_missing_file_is_named_in_the_error(tmp_path):
    ckpt = _save(tmp_path, "final")
    (ckpt / "optimizer.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"optimizer\.safetensors is missing"):
        load_checkpoint(tmp_path)


def test_path_without_checkpoint_raises_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        resolve_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="does not exist"):
        resolve_checkpoint(tmp_path / "nope")
