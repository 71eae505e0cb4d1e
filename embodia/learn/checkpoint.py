"""Checkpoint directories written atomically: safetensors weights, JSON config/state, optimizer and RNG states.

Layout of a run: `<run>/checkpoints/step_<N>/` (one directory per checkpoint) and `<run>/checkpoints/latest`
(a text file naming the newest). Each directory is written under a temporary name and renamed into place,
so a crash mid-write leaves the previous checkpoint as the latest.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.numpy
import safetensors.torch
import torch

from embodia.core.errors import CheckpointError

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
NORMALIZER_FILE = "normalizer.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
STATE_FILE = "state.json"
ENV_STATE_FILE = "env_state.safetensors"
REPLAY_FILE = "replay.safetensors"
REQUIRED_FILES = (MODEL_FILE, CONFIG_FILE, NORMALIZER_FILE, OPTIMIZER_FILE, STATE_FILE)


def save_checkpoint(run_dir: Path, name: str, *, model: dict[str, torch.Tensor], config: dict[str, Any],
                    normalizer: dict[str, np.ndarray], optimizer: dict[str, Any], state: dict[str, Any],
                    env_state: dict[str, np.ndarray] | None = None, replay: dict[str, np.ndarray] | None = None,
                    keep: int = 3) -> Path:
    """Write `<run_dir>/checkpoints/<name>/` atomically, point `latest` at it, prune to the newest `keep`."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / name
    tmp = root / f".{name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    safetensors.torch.save_file({k: v.detach().contiguous().clone() for k, v in model.items()}, tmp / MODEL_FILE)
    safetensors.numpy.save_file(_contiguous(normalizer), tmp / NORMALIZER_FILE)
    torch.save(optimizer, tmp / OPTIMIZER_FILE)
    (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, default=str))
    (tmp / STATE_FILE).write_text(json.dumps(state, indent=2))
    if env_state is not None:
        safetensors.numpy.save_file(_contiguous(env_state), tmp / ENV_STATE_FILE)
    if replay is not None:
        safetensors.numpy.save_file(_contiguous(replay), tmp / REPLAY_FILE)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _write_text_atomic(root / "latest", name)
    _prune(root, keep, protect=name)
    return final


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory from itself, a run directory (its latest checkpoint), or `checkpoints/`."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint path {path} does not exist; pass a run directory or a checkpoint directory")
    if (path / MODEL_FILE).exists() or (path / STATE_FILE).exists():
        return path
    for root in (path / "checkpoints", path):
        latest = root / "latest"
        if latest.is_file():
            target = root / latest.read_text().strip()
            if not target.is_dir():
                raise CheckpointError(f"{latest} names {target.name}, which does not exist; the run directory is damaged")
            return target
    raise CheckpointError(f"{path} holds no checkpoint (no {MODEL_FILE} and no checkpoints/latest)")


def load_checkpoint(path: str | Path, with_replay: bool = True) -> dict[str, Any]:
    """Read every file of a checkpoint; raises CheckpointError naming the missing or corrupt file."""
    ckpt = resolve_checkpoint(path)
    for file_name in REQUIRED_FILES:
        if not (ckpt / file_name).is_file():
            raise CheckpointError(f"checkpoint file {ckpt / file_name} is missing; the checkpoint is incomplete")
    loaded: dict[str, Any] = {"path": ckpt}
    loaded["model"] = _read(ckpt / MODEL_FILE, safetensors.torch.load_file)
    loaded["normalizer"] = _read(ckpt / NORMALIZER_FILE, safetensors.numpy.load_file)
    loaded["config"] = _read(ckpt / CONFIG_FILE, lambda p: json.loads(Path(p).read_text()))
    loaded["state"] = _read(ckpt / STATE_FILE, lambda p: json.loads(Path(p).read_text()))
    loaded["optimizer"] = _read(ckpt / OPTIMIZER_FILE, lambda p: torch.load(p, weights_only=False))
    loaded["env_state"] = _read(ckpt / ENV_STATE_FILE, safetensors.numpy.load_file) if (ckpt / ENV_STATE_FILE).is_file() else None
    replay_path = ckpt / REPLAY_FILE
    loaded["replay"] = _read(replay_path, safetensors.numpy.load_file) if with_replay and replay_path.is_file() else None
    return loaded


def load_weights_and_config(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, np.ndarray], dict[str, Any], Path]:
    """Just what inference needs: (model tensors, normalizer arrays, config, checkpoint dir)."""
    ckpt = resolve_checkpoint(path)
    for file_name in (MODEL_FILE, NORMALIZER_FILE, CONFIG_FILE):
        if not (ckpt / file_name).is_file():
            raise CheckpointError(f"checkpoint file {ckpt / file_name} is missing; the checkpoint is incomplete")
    model = _read(ckpt / MODEL_FILE, safetensors.torch.load_file)
    normalizer = _read(ckpt / NORMALIZER_FILE, safetensors.numpy.load_file)
    config = _read(ckpt / CONFIG_FILE, lambda p: json.loads(Path(p).read_text()))
    return model, normalizer, config, ckpt


def _read(path: Path, reader):
    try:
        return reader(path)
    except Exception as error:  # any parse failure means a damaged file; say which one
        raise CheckpointError(f"checkpoint file {path} is corrupt or unreadable ({type(error).__name__}: {error}); "
                              "resume from an earlier checkpoint or retrain") from error


def _contiguous(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.ascontiguousarray(v) for k, v in arrays.items()}


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _prune(root: Path, keep: int, protect: str) -> None:
    steps = sorted(p for p in root.glob("step_*") if p.is_dir() and p.name != protect)
    for old in steps[: max(0, len(steps) - (keep - 1))]:
        shutil.rmtree(old, ignore_errors=True)
