"""Deployable policies: `act(obs (B, obs_dim)) -> actions (B, act_dim)` from a checkpoint directory or an ONNX file."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from embodia.core.errors import UserError
from embodia.learn.checkpoint import CheckpointError, load_weights_and_config
from embodia.learn.nets import DeployedActor


class Policy:
    """A trained actor with observation normalization folded in; deterministic (mean) actions in the env's bounds."""

    def __init__(self, actor: DeployedActor, spec: dict[str, Any]) -> None:
        self.actor = actor.eval()
        self.spec = spec
        self.task: str = spec.get("task", "")
        self.algo: str = spec.get("algo", "")
        self.obs_dim = int(spec["obs_dim"])
        self.act_dim = int(spec["act_dim"])
        self.action_low = np.asarray(spec["action_low"], dtype=np.float32)
        self.action_high = np.asarray(spec["action_high"], dtype=np.float32)

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Actions (B, act_dim) float32 for observations (B, obs_dim); a single (obs_dim,) gives (act_dim,)."""
        obs = _check_obs(obs, self.obs_dim)
        with torch.no_grad():
            action = self.actor(torch.from_numpy(np.atleast_2d(obs))).numpy()
        return action[0] if obs.ndim == 1 else action

    __call__ = act

    def reset(self, env_ids: np.ndarray | None = None) -> None:
        """Stateless: nothing to reset."""


class OnnxPolicy:
    """The same contract over an exported ONNX file, run with ONNX Runtime."""

    def __init__(self, path: str | Path) -> None:
        import onnxruntime as ort

        path = Path(path)
        try:
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as error:
            raise CheckpointError(f"ONNX file {path} cannot be loaded ({error}); re-export it with `embodia export`") from error
        meta = self.session.get_modelmeta().custom_metadata_map
        self.spec = meta
        self.task = meta.get("embodia.task", "")
        self.algo = meta.get("embodia.algo", "")
        try:
            self.obs_dim = int(meta["embodia.obs_dim"])
            self.act_dim = int(meta["embodia.act_dim"])
            self.action_low = np.asarray(json.loads(meta["embodia.action_low"]), dtype=np.float32)
            self.action_high = np.asarray(json.loads(meta["embodia.action_high"]), dtype=np.float32)
        except KeyError as error:
            raise CheckpointError(f"ONNX file {path} lacks metadata {error.args[0]!r}; export it with `embodia export`") from None

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Actions (B, act_dim) float32 for observations (B, obs_dim); a single (obs_dim,) gives (act_dim,)."""
        obs = _check_obs(obs, self.obs_dim)
        action = self.session.run(["action"], {"obs": np.atleast_2d(obs)})[0]
        return action[0] if obs.ndim == 1 else action

    __call__ = act

    def reset(self, env_ids: np.ndarray | None = None) -> None:
        """Stateless: nothing to reset."""


def load_policy(path: str | Path) -> Policy | OnnxPolicy:
    """A policy from a run directory, checkpoint directory or `.onnx` file."""
    path = Path(path)
    if path.suffix == ".onnx":
        if not path.is_file():
            raise CheckpointError(f"ONNX policy file {path} does not exist")
        return OnnxPolicy(path)
    model, normalizer, config, ckpt = load_weights_and_config(path)
    spec = config.get("policy")
    if not isinstance(spec, dict) or "algo" not in spec:
        raise CheckpointError(f"{ckpt / 'config.json'} has no 'policy' section; it was not written by embodia.learn")
    return Policy(build_deployed_actor(model, normalizer, spec, ckpt), spec)


def build_deployed_actor(model: dict[str, torch.Tensor], normalizer: dict[str, np.ndarray], spec: dict[str, Any],
                         ckpt: Path) -> DeployedActor:
    """Dispatch on `spec["algo"]` to `embodia.learn.<algo>.deployed_actor(model, normalizer, spec)`."""
    algo = spec["algo"]
    try:
        module = importlib.import_module(f"embodia.learn.{algo}")
        builder = module.deployed_actor
    except (ModuleNotFoundError, AttributeError):
        raise CheckpointError(f"{ckpt / 'config.json'} names algo {algo!r}, which embodia.learn cannot load") from None
    try:
        return builder(model, normalizer, spec)
    except (KeyError, RuntimeError) as error:
        raise CheckpointError(f"checkpoint {ckpt} does not match its config ({error}); the files are from different runs") from error


def _check_obs(obs: np.ndarray, obs_dim: int) -> np.ndarray:
    obs = np.asarray(obs, dtype=np.float32)
    if obs.shape[-1:] != (obs_dim,) or obs.ndim not in (1, 2):
        raise UserError(f"observation has shape {obs.shape}, expected (batch, {obs_dim})")
    return obs
