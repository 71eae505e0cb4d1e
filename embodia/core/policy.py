"""The policy contract shared by learning, evaluation and serving, and the one reader/writer of ONNX metadata.

A policy maps a batch of observations (and, for camera policies, images) to a batch of actions in the
action bounds. An exported policy is an ONNX graph with input `obs` float32 (B, obs_dim) [plus one uint8
input (B, H, W, 3) per image key], output `action` float32 (B, act_dim), and `embodia.*` metadata.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Protocol, runtime_checkable

import numpy as np

from embodia.core.errors import CheckpointError, UserError

OBS_INPUT = "obs"
ACTION_OUTPUT = "action"
META_PREFIX = "embodia."
REQUIRED_KEYS = ("obs_dim", "act_dim", "action_low", "action_high")
_ACTION_OUTPUTS = [ACTION_OUTPUT]


@runtime_checkable
class Policy(Protocol):
    """What every policy offers, wherever it comes from (checkpoint, ONNX file, expert, server)."""

    obs_dim: int | None
    act_dim: int | None
    image_keys: tuple[str, ...]

    def act(self, obs: np.ndarray, images: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """Actions (B, act_dim) for observations (B, obs_dim) [and images {key: (B, H, W, 3) uint8}]."""


@dataclass(frozen=True)
class PolicyMetadata:
    """The `embodia.*` metadata an exported policy carries, validated."""

    obs_dim: int
    act_dim: int
    action_low: tuple[float, ...]
    action_high: tuple[float, ...]
    task: str = ""
    algo: str = ""
    version: str = ""
    image_keys: tuple[str, ...] = ()
    image_size: int | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def to_onnx(self) -> dict[str, str]:
        """The metadata_props key/value strings written into the ONNX file."""
        props = {f"{META_PREFIX}task": self.task, f"{META_PREFIX}algo": self.algo,
                 f"{META_PREFIX}version": self.version, f"{META_PREFIX}obs_dim": str(self.obs_dim),
                 f"{META_PREFIX}act_dim": str(self.act_dim),
                 f"{META_PREFIX}action_low": json.dumps([float(x) for x in self.action_low]),
                 f"{META_PREFIX}action_high": json.dumps([float(x) for x in self.action_high])}
        if self.image_keys:
            props[f"{META_PREFIX}image_keys"] = json.dumps(list(self.image_keys))
            props[f"{META_PREFIX}image_size"] = str(self.image_size)
        props.update({f"{META_PREFIX}{k}": v for k, v in self.extra.items()})
        return props

    @classmethod
    def from_onnx(cls, props: Mapping[str, str], source: str | Path) -> "PolicyMetadata":
        """Validate metadata_props read from `source`; a missing or malformed key is a `CheckpointError` naming it."""
        values = {k.removeprefix(META_PREFIX): v for k, v in props.items() if k.startswith(META_PREFIX)}
        for key in REQUIRED_KEYS:
            if key not in values:
                raise CheckpointError(f"{source}: ONNX metadata lacks '{META_PREFIX}{key}'; it was not exported by "
                                      "embodia — re-export it with `embodia export`")
        obs_dim = _positive_int(values, "obs_dim", source)
        act_dim = _positive_int(values, "act_dim", source)
        low = _bounds(values, "action_low", act_dim, source)
        high = _bounds(values, "action_high", act_dim, source)
        if any(lo > hi for lo, hi in zip(low, high)):
            raise CheckpointError(f"{source}: ONNX metadata has action_low > action_high; re-export it")
        image_keys: tuple[str, ...] = ()
        image_size = None
        if values.get("image_keys"):
            try:
                image_keys = tuple(str(k) for k in json.loads(values["image_keys"]))
            except (ValueError, TypeError):
                raise CheckpointError(f"{source}: ONNX metadata '{META_PREFIX}image_keys' must be a JSON list of "
                                      f"strings, got {values['image_keys'][:80]!r}") from None
            image_size = _positive_int(values, "image_size", source)
        known = {"task", "algo", "version", "image_keys", "image_size", *REQUIRED_KEYS}
        return cls(obs_dim=obs_dim, act_dim=act_dim, action_low=low, action_high=high, task=values.get("task", ""),
                   algo=values.get("algo", ""), version=values.get("version", ""), image_keys=image_keys,
                   image_size=image_size, extra={k: v for k, v in values.items() if k not in known})


def _positive_int(values: Mapping[str, str], key: str, source: str | Path) -> int:
    try:
        number = int(values.get(key, ""))
    except ValueError:
        number = 0
    if number <= 0:
        raise CheckpointError(f"{source}: ONNX metadata '{META_PREFIX}{key}'={values.get(key)!r} must be a positive "
                              "integer; re-export it with `embodia export`")
    return number


def _bounds(values: Mapping[str, str], key: str, act_dim: int, source: str | Path) -> tuple[float, ...]:
    try:
        bounds = tuple(float(x) for x in json.loads(values[key]))
    except (ValueError, TypeError):
        raise CheckpointError(f"{source}: ONNX metadata '{META_PREFIX}{key}' must be a JSON list of {act_dim} "
                              f"numbers, got {values[key][:80]!r}") from None
    if len(bounds) != act_dim or not all(math.isfinite(b) for b in bounds):
        raise CheckpointError(f"{source}: ONNX metadata '{META_PREFIX}{key}' must hold {act_dim} finite numbers, "
                              f"got {len(bounds)}: {values[key][:80]}")
    return bounds


def check_obs(obs: Any, obs_dim: int) -> np.ndarray:
    """Observations as float32 (B, obs_dim) or (obs_dim,); a wrong shape or non-finite value is a ValueError."""
    array = np.asarray(obs, dtype=np.float32)
    if array.ndim not in (1, 2) or array.shape[-1:] != (obs_dim,):
        raise UserError(f"observation has shape {array.shape}, expected (batch, {obs_dim}) or ({obs_dim},)")
    if not np.all(np.isfinite(array)):
        raise UserError("observation contains NaN or infinity")
    return array


class OnnxPolicy:
    """An exported policy run on ONNX Runtime: `act(obs (B, obs_dim)[, images]) -> actions (B, act_dim)` float32."""

    def __init__(self, path: str | Path, *, intra_op_threads: int = 1) -> None:
        self.path = Path(path)
        self.name = self.path.name
        self.session = _open_session(self.path, intra_op_threads)
        self.metadata = PolicyMetadata.from_onnx(self.session.get_modelmeta().custom_metadata_map, self.path)
        self._check_graph()
        meta = self.metadata
        self.task, self.algo = meta.task, meta.algo
        self.obs_dim, self.act_dim, self.image_keys = meta.obs_dim, meta.act_dim, meta.image_keys
        self.image_size = meta.image_size
        self.action_low = np.asarray(meta.action_low, dtype=np.float32)
        self.action_high = np.asarray(meta.action_high, dtype=np.float32)

    def _check_graph(self) -> None:
        """The graph's inputs/outputs must be exactly the contract's: `obs` [+ image keys] -> `action`."""
        inputs = {node.name: node for node in self.session.get_inputs()}
        outputs = {node.name for node in self.session.get_outputs()}
        expected = {OBS_INPUT, *self.metadata.image_keys}
        if set(inputs) != expected or ACTION_OUTPUT not in outputs:
            raise CheckpointError(f"{self.path}: ONNX graph has inputs {sorted(inputs)} and outputs {sorted(outputs)};"
                                  f" its metadata promises inputs {sorted(expected)} and output '{ACTION_OUTPUT}' — "
                                  "re-export it with `embodia export`")
        shape = inputs[OBS_INPUT].shape
        if len(shape) == 2 and isinstance(shape[-1], int) and shape[-1] != self.metadata.obs_dim:
            raise CheckpointError(f"{self.path}: metadata obs_dim={self.metadata.obs_dim} disagrees with the graph's "
                                  f"input width {shape[-1]}; re-export it with `embodia export`")

    def act(self, obs: np.ndarray, images: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """Deterministic actions; a single (obs_dim,) observation gives (act_dim,)."""
        array = check_obs(obs, self.obs_dim)
        feeds: dict[str, np.ndarray] = {OBS_INPUT: np.atleast_2d(array)}
        if self.image_keys:
            feeds.update(self._image_feeds(images, feeds[OBS_INPUT].shape[0]))
        (action,) = self.session.run([ACTION_OUTPUT], feeds)
        return action[0] if array.ndim == 1 else action

    __call__ = act

    def run_checked(self, obs: np.ndarray, images: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """`act` without its input checks, for a caller that has already checked obs (float32 (B, obs_dim),
        finite) and images (uint8 (B, size, size, 3) per key) — the policy server's decoders, where the second
        check would cost a third of the handler's time."""
        feeds = {OBS_INPUT: obs, **images} if images else {OBS_INPUT: obs}
        return self.session.run(_ACTION_OUTPUTS, feeds)[0]

    def _image_feeds(self, images: Mapping[str, np.ndarray] | None, batch: int) -> dict[str, np.ndarray]:
        size = self.metadata.image_size
        if images is None:
            raise UserError(f"this camera policy needs images for {list(self.image_keys)}, each ({batch}, {size}, "
                            f"{size}, 3) uint8")
        feeds = {}
        for key in self.image_keys:
            if key not in images:
                raise UserError(f"missing image {key!r}; this policy needs {list(self.image_keys)}")
            frames = np.asarray(images[key])
            if frames.ndim == 3:
                frames = frames[None]
            if frames.shape != (batch, size, size, 3) or frames.dtype != np.uint8:
                raise UserError(f"image {key!r} has shape {frames.shape} {frames.dtype}, expected ({batch}, {size}, "
                                f"{size}, 3) uint8")
            feeds[key] = np.ascontiguousarray(frames)
        return feeds

    def reset(self, env_ids: np.ndarray | None = None) -> None:
        """Stateless: nothing to reset."""


def _open_session(path: Path, intra_op_threads: int):
    import onnxruntime as ort

    if not path.exists():
        raise CheckpointError(f"policy file {path} does not exist; pass the .onnx file written by `embodia export`")
    if path.is_dir():
        raise CheckpointError(f"policy path {path} is a directory; pass the .onnx file written by `embodia export`")
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own types for bad protobufs and graphs
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise CheckpointError(f"policy file {path} is not a valid ONNX model ({first_line}); "
                              "re-export it with `embodia export`") from error


class RandomPolicy:
    """Uniform random actions in given bounds from a seeded generator (evaluation binds it to the env's
    counter-based draws so replays repeat; see `embodia.evaluate.policies`)."""

    name = "random"
    image_keys: tuple[str, ...] = ()

    def __init__(self, low: np.ndarray | None = None, high: np.ndarray | None = None, seed: int = 0) -> None:
        self.obs_dim = None
        self.act_dim = None if low is None else int(np.size(low))
        self.low = None if low is None else np.asarray(low, dtype=np.float64)
        self.high = None if high is None else np.asarray(high, dtype=np.float64)
        self.rng = np.random.default_rng(seed)

    def act(self, obs: np.ndarray, images: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """One uniform draw per env in the bounds."""
        if self.low is None:
            raise RuntimeError("RandomPolicy needs action bounds; pass low/high or bind it to an env")
        batch = np.atleast_2d(obs).shape[0]
        return self.low + self.rng.random((batch, self.act_dim)) * (self.high - self.low)

    def reset(self, env_ids: np.ndarray | None = None) -> None:
        """Stateless: nothing to reset."""
