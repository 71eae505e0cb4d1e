"""The one checkpoint format of every algorithm (PPO, SAC, BC, vision BC, diffusion): tensors and plain data only.

A checkpoint is a directory: `model.safetensors` (weights), `normalizer.safetensors` (named arrays),
`config.json` (`algo`, the algorithm's `config`, the `policy` spec that rebuilds the actor, `task`, and for
imitation the `dataset` it learned from), `state.json` (progress counters), and for training that can continue,
`optimizer.safetensors` (optimizer and RNG state: tensors, with their nesting as JSON in the file's header),
`env_state.safetensors` and `replay.safetensors`. Nothing is ever unpickled: a checkpoint may come from
someone else. A run directory holds `checkpoints/<name>/` and `checkpoints/latest` (the newest name).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import safetensors
import safetensors.numpy

from embodia.core.atomic import atomic_dir, atomic_write_json, atomic_write_text
from embodia.core.errors import CheckpointError

if TYPE_CHECKING:
    import torch

# torch is imported inside the functions that need it, so that the torch-free MLP export
# (`embodia.learn.mlp_export`) can resolve and read checkpoints without paying for it
MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
NORMALIZER_FILE = "normalizer.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "state.json"
ENV_STATE_FILE = "env_state.safetensors"
REPLAY_FILE = "replay.safetensors"
LEGACY_PICKLE_FILE = "optimizer.pt"
POLICY_FILES = (MODEL_FILE, NORMALIZER_FILE, CONFIG_FILE)
RESUME_FILES = (*POLICY_FILES, STATE_FILE, OPTIMIZER_FILE)
CHECKPOINTS_DIR = "checkpoints"
LATEST_FILE = "latest"
_STRUCTURE_KEY = "structure"


def save_checkpoint(directory: str | Path, *, model: dict[str, torch.Tensor], normalizer: dict[str, np.ndarray],
                    config: dict[str, Any], state: dict[str, Any], optimizer: dict[str, Any] | None = None,
                    env_state: dict[str, np.ndarray] | None = None,
                    replay: dict[str, np.ndarray] | None = None) -> Path:
    """Write one checkpoint directory atomically (a crash leaves the previous one, never a mix)."""
    import safetensors.torch

    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise CheckpointError(f"{directory} exists and is not a checkpoint directory; choose another path")
    with atomic_dir(directory) as tmp:
        safetensors.torch.save_file({k: v.detach().cpu().contiguous().clone() for k, v in model.items()},
                                    tmp / MODEL_FILE)
        safetensors.numpy.save_file(_contiguous(normalizer), tmp / NORMALIZER_FILE)
        atomic_write_json(tmp / CONFIG_FILE, _plain(config))
        atomic_write_json(tmp / STATE_FILE, _plain(state))
        if optimizer is not None:
            tensors, structure = pack_state(optimizer)
            safetensors.torch.save_file(tensors, tmp / OPTIMIZER_FILE,
                                        metadata={_STRUCTURE_KEY: json.dumps(structure, allow_nan=False)})
        if env_state is not None:
            safetensors.numpy.save_file(_contiguous(env_state), tmp / ENV_STATE_FILE)
        if replay is not None:
            safetensors.numpy.save_file(_contiguous(replay), tmp / REPLAY_FILE)
    return directory


def save_run_checkpoint(run_dir: str | Path, name: str, *, keep: int = 3, **parts: Any) -> Path:
    """`save_checkpoint` into `<run_dir>/checkpoints/<name>`, point `latest` at it, keep the newest `keep` step_*."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    path = save_checkpoint(root / name, **parts)
    atomic_write_text(root / LATEST_FILE, name)
    _prune(root, keep, protect=name)
    return path


def pack_state(value: Any) -> tuple[dict[str, torch.Tensor], Any]:
    """Split nested optimizer/RNG state into flat tensors and a JSON skeleton naming them (the inverse of
    `unpack_state`); NumPy arrays are stored as tensors and come back as arrays."""
    import torch

    tensors: dict[str, torch.Tensor] = {}

    def walk(item: Any) -> Any:
        if isinstance(item, torch.Tensor):
            key = str(len(tensors))
            tensors[key] = item.detach().cpu().contiguous().clone()
            return {"__tensor__": key}
        if isinstance(item, np.ndarray):
            key = str(len(tensors))
            tensors[key] = torch.from_numpy(np.ascontiguousarray(item).copy())
            return {"__array__": key}
        if isinstance(item, dict):
            return {"__dict__": [[walk(k), walk(v)] for k, v in item.items()]}
        if isinstance(item, (list, tuple)):
            return {"__list__" if isinstance(item, list) else "__tuple__": [walk(v) for v in item]}
        if isinstance(item, (np.integer, np.floating, np.bool_)):
            return item.item()
        if item is None or isinstance(item, (bool, int, float, str)):
            return item
        raise TypeError(f"cannot store {type(item).__name__} in a checkpoint; only tensors, arrays and plain data")

    return tensors, walk(value)


def unpack_state(tensors: dict[str, torch.Tensor], structure: Any) -> Any:
    """Rebuild what `pack_state` split (dict keys keep their types, e.g. torch's integer parameter ids)."""
    if isinstance(structure, dict):
        if "__tensor__" in structure:
            return tensors[structure["__tensor__"]]
        if "__array__" in structure:
            return tensors[structure["__array__"]].numpy()
        if "__dict__" in structure:
            return {unpack_state(tensors, k): unpack_state(tensors, v) for k, v in structure["__dict__"]}
        if "__list__" in structure:
            return [unpack_state(tensors, v) for v in structure["__list__"]]
        if "__tuple__" in structure:
            return tuple(unpack_state(tensors, v) for v in structure["__tuple__"])
        raise ValueError(f"unknown entry {sorted(structure)} in the optimizer state structure")
    return structure


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory from itself, a run directory (its latest checkpoint), or its `checkpoints/`."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint path {path} does not exist; pass a run directory or a checkpoint directory")
    if (path / MODEL_FILE).exists() or (path / CONFIG_FILE).exists() or (path / STATE_FILE).exists():
        return path
    for root in (path / CHECKPOINTS_DIR, path):
        latest = root / LATEST_FILE
        if latest.is_file():
            target = root / latest.read_text().strip()
            if not target.is_dir():
                raise CheckpointError(f"{latest} names {target.name}, which does not exist; the run directory is damaged")
            return target
    raise CheckpointError(f"{path} holds no checkpoint (no {MODEL_FILE} and no {CHECKPOINTS_DIR}/{LATEST_FILE}); "
                          "pass a run directory written by `embodia train` or one of its checkpoint directories")


def load_checkpoint(path: str | Path, *, training_state: bool = True, with_replay: bool = True) -> dict[str, Any]:
    """Read a checkpoint (resolved from a run directory too): weights, normalizer, config, state, and with
    `training_state` the optimizer/RNG, env and replay states. Errors name the missing or damaged file."""
    import safetensors.torch

    ckpt = _present(resolve_checkpoint(path), RESUME_FILES if training_state else POLICY_FILES)
    loaded = _read_policy_files(ckpt, safetensors.torch.load_file)
    if not training_state:
        return loaded
    loaded["optimizer"] = _read(ckpt / OPTIMIZER_FILE, _read_packed)
    loaded["env_state"] = _optional(ckpt / ENV_STATE_FILE)
    loaded["replay"] = _optional(ckpt / REPLAY_FILE) if with_replay else None
    return loaded


def load_policy_arrays(path: str | Path) -> dict[str, Any]:
    """What rebuilds a deployable policy (weights, normalizer, config, state), weights as NumPy arrays: the
    torch-free reader of `load_checkpoint(path, training_state=False)`."""
    return _read_policy_files(_present(resolve_checkpoint(path), POLICY_FILES), safetensors.numpy.load_file)


def _present(ckpt: Path, files: tuple[str, ...]) -> Path:
    """`ckpt`, once each of `files` is found there (else the error names the first missing one)."""
    for file_name in files:
        if not (ckpt / file_name).is_file():
            raise CheckpointError(_missing_message(ckpt, file_name))
    return ckpt


def _read_policy_files(ckpt: Path, read_weights) -> dict[str, Any]:
    loaded: dict[str, Any] = {"path": ckpt}
    loaded["model"] = _read(ckpt / MODEL_FILE, read_weights)
    loaded["normalizer"] = _read(ckpt / NORMALIZER_FILE, safetensors.numpy.load_file)
    loaded["config"] = _read(ckpt / CONFIG_FILE, _read_json_object)
    loaded["state"] = _read(ckpt / STATE_FILE, _read_json_object) if (ckpt / STATE_FILE).is_file() else {}
    return loaded


def policy_section(loaded: dict[str, Any]) -> dict[str, Any]:
    """config.json's `policy` spec (what rebuilds the actor), checked to name an algorithm."""
    spec = loaded["config"].get("policy")
    if not isinstance(spec, dict) or not isinstance(spec.get("algo"), str):
        raise CheckpointError(f"{loaded['path'] / CONFIG_FILE} has no 'policy' section naming its algo; "
                              "it was not written by embodia.learn")
    return spec


def _missing_message(ckpt: Path, file_name: str) -> str:
    if file_name == OPTIMIZER_FILE and (ckpt / LEGACY_PICKLE_FILE).exists():
        return (f"checkpoint file {ckpt / file_name} is missing; {ckpt / LEGACY_PICKLE_FILE} (a pickle, from an older "
                "embodia) is never loaded because unpickling can run code; load this checkpoint for inference "
                "(load_policy, export) or retrain")
    return f"checkpoint file {ckpt / file_name} is missing; the checkpoint is incomplete"


def _read_json_object(path: Path) -> dict[str, Any]:
    value = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return value


def _read_packed(path: Path) -> Any:
    import safetensors.torch

    with safetensors.safe_open(str(path), framework="pt") as handle:
        structure = json.loads((handle.metadata() or {})[_STRUCTURE_KEY])
    return unpack_state(safetensors.torch.load_file(path), structure)


def _optional(path: Path) -> dict[str, np.ndarray] | None:
    return _read(path, safetensors.numpy.load_file) if path.is_file() else None


def _read(path: Path, reader):
    try:
        return reader(path)
    except Exception as error:  # any parse failure means a damaged file; say which one
        raise CheckpointError(f"checkpoint file {path} is corrupt or unreadable ({type(error).__name__}: {error}); "
                              "resume from an earlier checkpoint or retrain") from error


def _contiguous(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.ascontiguousarray(v) for k, v in arrays.items()}


def _plain(value: Any) -> Any:
    """JSON-safe copy: arrays/tensors to lists, numpy scalars to Python, paths to strings."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    torch_module = sys.modules.get("torch")  # not imported: the value cannot be a tensor
    if isinstance(value, np.ndarray) or (torch_module is not None and isinstance(value, torch_module.Tensor)):
        return value.tolist()
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def _prune(root: Path, keep: int, protect: str) -> None:
    steps = sorted(p for p in root.glob("step_*") if p.is_dir() and p.name != protect)
    for old in steps[: max(0, len(steps) - (keep - 1))]:
        shutil.rmtree(old, ignore_errors=True)
