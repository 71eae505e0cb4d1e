"""Torch-free export of MLP policies (PPO, SAC, state-only BC): the checkpoint's weights read as NumPy arrays, the
deployed actor's ONNX graph written directly, and its actions checked with ONNX Runtime against a NumPy forward
pass of the same weights. Camera BC and diffusion policies are not plain MLPs: they keep the PyTorch exporter.

The graph is the one `torch.onnx` traces from the deployed actors (`nets.DeployedActor`, `bc.FirstAction`):
normalize and clip the observation, [pick BC's state columns], Linear/activation layers, squash (tanh, clip or
none), rescale to the action box, [clip to it (BC)] — same inputs, outputs, dtypes and `embodia.*` metadata.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embodia import __version__
from embodia.core.atomic import atomic_file
from embodia.core.errors import CheckpointError
from embodia.core.policy import ACTION_OUTPUT, OBS_INPUT, OnnxPolicy
from embodia.learn import onnx_proto
from embodia.learn.checkpoint import CONFIG_FILE, load_policy_arrays, policy_section
from embodia.learn.onnx_io import OPSET, metadata_from_spec
from embodia.learn.registry import algorithms

ACTIVATIONS = ("tanh", "relu", "elu", "silu")
OBS_NORM_EPSILON = 1e-8  # ObsNormalizer's: std = sqrt(var + epsilon)
NO_OBS_CLIP = 3.0e38  # what the RL actors clip to when observations are not normalized


@dataclass(frozen=True)
class MlpPolicy:
    """A deterministic MLP actor as arrays: raw observation (B, obs_dim) -> action (B, act_dim), all float32."""

    spec: dict[str, Any]  # config.json's policy section (metadata of the ONNX file)
    layers: tuple[tuple[np.ndarray, np.ndarray], ...]  # (weight (out, in), bias (out,)) per Linear
    activation: str  # between Linear layers
    obs_center: np.ndarray  # (obs_dim,)
    obs_scale: np.ndarray  # (obs_dim,)
    obs_clip: float | None  # clip of the normalized observation (RL), None for BC
    state_index: np.ndarray | None  # (k,) int64 columns the network reads (BC's state_indices)
    squash: str | None  # "tanh" (SAC), "clip" (PPO) or None (BC) on the network output
    action_scale: np.ndarray  # (act_dim,)
    action_bias: np.ndarray  # (act_dim,)
    action_bounds: tuple[np.ndarray, np.ndarray] | None  # BC clips its un-normalized action to (low, high)

    @property
    def obs_dim(self) -> int:
        return int(self.spec["obs_dim"])

    @property
    def act_dim(self) -> int:
        return int(self.spec["act_dim"])

    def act(self, obs: np.ndarray) -> np.ndarray:
        """NumPy forward pass (B, obs_dim) -> (B, act_dim) float32, the reference the ONNX file is checked against."""
        x = (np.asarray(obs, dtype=np.float32) - self.obs_center) / self.obs_scale
        if self.obs_clip is not None:
            x = np.clip(x, np.float32(-self.obs_clip), np.float32(self.obs_clip))
        if self.state_index is not None:
            x = x[:, self.state_index]
        for i, (weight, bias) in enumerate(self.layers):
            x = x @ weight.T + bias
            if i < len(self.layers) - 1:
                x = _numpy_activation(self.activation, x)
        if self.squash == "tanh":
            x = np.tanh(x)
        elif self.squash == "clip":
            x = np.clip(x, np.float32(-1.0), np.float32(1.0))
        x = x * self.action_scale + self.action_bias
        if self.action_bounds is not None:
            x = np.maximum(np.minimum(x, self.action_bounds[1]), self.action_bounds[0])
        return x.astype(np.float32, copy=False)


def _numpy_activation(name: str, x: np.ndarray) -> np.ndarray:
    if name == "tanh":
        return np.tanh(x)
    if name == "relu":
        return np.maximum(x, np.float32(0.0))
    if name == "elu":
        return np.where(x > 0, x, np.expm1(np.minimum(x, np.float32(0.0))))
    with np.errstate(over="ignore"):  # exp(-x) overflows to inf for very negative x: x / inf = -0, as torch gives
        return x / (np.float32(1.0) + np.exp(-x))


# ---------------------------------------------------------------------------------------------- reading
def read_mlp_policy(path: str | Path) -> MlpPolicy | None:
    """The MLP actor of a checkpoint (or run) directory, or None when the policy is not a plain MLP (camera BC,
    diffusion): those need the PyTorch exporter. A damaged or mismatched checkpoint is a `CheckpointError`."""
    loaded = load_policy_arrays(path)
    spec = policy_section(loaded)
    ckpt: Path = loaded["path"]
    algo = spec["algo"]
    readers: dict[str, Callable[..., MlpPolicy | None]] = {"ppo": _read_rl, "sac": _read_rl, "bc": _read_bc}
    if algo not in algorithms():
        raise CheckpointError(f"{ckpt / CONFIG_FILE} names algo {algo!r}, which embodia.learn cannot load; "
                              f"it knows {', '.join(algorithms())}")
    if algo not in readers:
        return None
    try:
        _check_spec(spec)
        policy = readers[algo](loaded["model"], loaded["normalizer"], spec)
    except (KeyError, ValueError, TypeError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise CheckpointError(f"checkpoint {ckpt} does not match its config ({first}); the files are from "
                              "different runs or were edited") from error
    if policy is not None:
        _check_finite(policy, ckpt)
    return policy


def _check_spec(spec: dict[str, Any]) -> None:
    for key in ("obs_dim", "act_dim"):
        if not isinstance(spec.get(key), int) or spec[key] <= 0:
            raise ValueError(f"policy.{key}={spec.get(key)!r} must be a positive integer")
    for key in ("action_low", "action_high"):
        bounds = spec.get(key)
        if (not isinstance(bounds, list) or len(bounds) != spec["act_dim"]
                or not all(isinstance(b, (int, float)) and math.isfinite(b) for b in bounds)):
            raise ValueError(f"policy.{key} must be a list of {spec['act_dim']} finite numbers")


def _read_rl(model: dict[str, np.ndarray], normalizer: dict[str, np.ndarray], spec: dict[str, Any]) -> MlpPolicy:
    """PPO: the Gaussian mean `actor.mean.*`, clipped; SAC: `actor.trunk.*` then `actor.mean_head`, tanh."""
    if spec["algo"] == "ppo":
        layers, squash = _linear_chain(model, "actor.mean."), "clip"
    else:
        layers, squash = _linear_chain(model, "actor.trunk.") + [_linear(model, "actor.mean_head.")], "tanh"
    if len(layers) != len(spec["hidden_sizes"]) + 1:
        raise ValueError(f"{len(layers)} Linear layers for hidden_sizes={spec['hidden_sizes']}")
    activation = _activation(spec["activation"])
    obs_dim = spec["obs_dim"]
    if spec["norm_obs"]:
        mean, var = _vector(normalizer, "obs_mean", obs_dim), _vector(normalizer, "obs_var", obs_dim)
        center, scale, clip = mean, np.sqrt(var + OBS_NORM_EPSILON), float(spec["obs_clip"])
    else:
        center, scale, clip = np.zeros(obs_dim), np.ones(obs_dim), NO_OBS_CLIP
    low, high = np.asarray(spec["action_low"], np.float64), np.asarray(spec["action_high"], np.float64)
    return MlpPolicy(spec, _float32_layers(layers), activation, _f32(center), _f32(scale), clip, None, squash,
                     _f32((high - low) / 2.0), _f32((high + low) / 2.0), None)


def _read_bc(model: dict[str, np.ndarray], normalizer: dict[str, np.ndarray], spec: dict[str, Any]) -> MlpPolicy | None:
    """State BC: `body.*` (SiLU), first action of the predicted chunk, un-normalized and clipped; camera BC: None."""
    config = spec["bc"]
    if config.get("image_keys"):
        return None
    obs_dim, act_dim = spec["obs_dim"], spec["act_dim"]
    layers = _linear_chain(model, "body.")
    if len(layers) != len(config["hidden_sizes"]) + 1:
        raise ValueError(f"{len(layers)} Linear layers for hidden_sizes={config['hidden_sizes']}")
    head_weight, head_bias = layers[-1]
    if head_weight.shape[0] != int(config["chunk_size"]) * act_dim:
        raise ValueError(f"output layer has {head_weight.shape[0]} rows for chunk_size={config['chunk_size']} x "
                         f"act_dim={act_dim}")
    layers[-1] = (head_weight[:act_dim], head_bias[:act_dim])  # the chunk is (chunk, act_dim) row-major: action 0
    state_index = None
    if config.get("state_indices") is not None:
        state_index = np.asarray(config["state_indices"], dtype=np.int64)
        if state_index.ndim != 1 or state_index.size == 0 or state_index.min() < 0 or state_index.max() >= obs_dim:
            raise ValueError(f"bc.state_indices={config['state_indices']} out of range for obs_dim={obs_dim}")
    low, high = _f32(spec["action_low"]), _f32(spec["action_high"])
    return MlpPolicy(spec, _float32_layers(layers), "silu", _f32(_vector(normalizer, "obs.center", obs_dim)),
                     _f32(_vector(normalizer, "obs.scale", obs_dim)), None, state_index, None,
                     _f32(_vector(normalizer, "action.scale", act_dim)),
                     _f32(_vector(normalizer, "action.center", act_dim)), (low, high))


def _linear_chain(model: dict[str, np.ndarray], prefix: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """The Linear layers of an `nn.Sequential` under `prefix`, in order (activations hold no weights)."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.weight")
    indices = sorted(int(m.group(1)) for m in map(pattern.fullmatch, model) if m)
    if not indices:
        raise KeyError(f"no '{prefix}<i>.weight' in model.safetensors")
    return [_linear(model, f"{prefix}{i}.") for i in indices]


def _linear(model: dict[str, np.ndarray], prefix: str) -> tuple[np.ndarray, np.ndarray]:
    weight, bias = model[prefix + "weight"], model[prefix + "bias"]
    if weight.ndim != 2 or bias.shape != weight.shape[:1]:
        raise ValueError(f"{prefix}weight {weight.shape} and {prefix}bias {bias.shape} are not a Linear layer")
    return weight, bias


def _float32_layers(layers: list[tuple[np.ndarray, np.ndarray]]) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """Check that the layers chain (each one's output width is the next one's input) and cast to float32."""
    for (weight, _), (next_weight, _) in itertools.pairwise(layers):
        if next_weight.shape[1] != weight.shape[0]:
            raise ValueError(f"a Linear layer of width {weight.shape[0]} feeds one expecting {next_weight.shape[1]}")
    return tuple((_f32(weight), _f32(bias)) for weight, bias in layers)


def _vector(arrays: dict[str, np.ndarray], key: str, size: int) -> np.ndarray:
    value = np.asarray(arrays[key], dtype=np.float64).reshape(-1)
    if value.size != size:
        raise ValueError(f"normalizer '{key}' holds {value.size} values, expected {size}")
    return value


def _activation(name: Any) -> str:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation {name!r} is not one of {', '.join(ACTIVATIONS)}")
    return name


def _f32(values: Any) -> np.ndarray:
    return np.ascontiguousarray(values, dtype=np.float32)


def _check_finite(policy: MlpPolicy, ckpt: Path) -> None:
    arrays = [array for layer in policy.layers for array in layer]
    arrays += [policy.obs_center, policy.obs_scale, policy.action_scale, policy.action_bias]
    if not all(np.all(np.isfinite(array)) for array in arrays):
        raise CheckpointError(f"checkpoint {ckpt} holds NaN or infinite weights or normalizer statistics (training "
                              "diverged); export an earlier checkpoint")
    if not np.all(policy.obs_scale > 0):
        raise CheckpointError(f"checkpoint {ckpt} has an observation scale <= 0 in its normalizer; it is damaged")


# ---------------------------------------------------------------------------------------------- ONNX graph
class _GraphBuilder:
    """Nodes and initializers of one graph, each value named in order (`n0`, `n1`, ...) as the graph grows."""

    def __init__(self) -> None:
        self.nodes: list[bytes] = []
        self.initializers: list[bytes] = []
        self._count = 0

    def const(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(onnx_proto.tensor(name, array))
        return name

    def op(self, op_type: str, *inputs: str, output: str | None = None, **attributes: float) -> str:
        output = output or f"n{self._count}"
        self.nodes.append(onnx_proto.node(op_type, inputs, [output], f"{op_type}_{self._count}", attributes))
        self._count += 1
        return output


def onnx_bytes(policy: MlpPolicy) -> bytes:
    """The ONNX file of `policy`: input `obs` float32 (batch, obs_dim), output `action` float32 (batch, act_dim)."""
    graph = _GraphBuilder()
    x = graph.op("Sub", OBS_INPUT, graph.const("obs_center", policy.obs_center))
    x = graph.op("Div", x, graph.const("obs_scale", policy.obs_scale))
    if policy.obs_clip is not None:
        clip = np.float32(policy.obs_clip)
        x = graph.op("Clip", x, graph.const("obs_clip_min", np.array(-clip)), graph.const("obs_clip_max", np.array(clip)))
    if policy.state_index is not None:
        x = graph.op("Gather", x, graph.const("state_index", policy.state_index), axis=1)
    for i, (weight, bias) in enumerate(policy.layers):
        x = graph.op("Gemm", x, graph.const(f"layer{i}.weight", weight), graph.const(f"layer{i}.bias", bias), transB=1)
        if i < len(policy.layers) - 1:
            x = _onnx_activation(graph, policy.activation, x)
    if policy.squash == "tanh":
        x = graph.op("Tanh", x)
    elif policy.squash == "clip":
        x = graph.op("Clip", x, graph.const("unit_min", np.array(-1.0, np.float32)),
                     graph.const("unit_max", np.array(1.0, np.float32)))
    x = graph.op("Mul", x, graph.const("action_scale", policy.action_scale))
    last = ACTION_OUTPUT if policy.action_bounds is None else None
    x = graph.op("Add", x, graph.const("action_bias", policy.action_bias), output=last)
    if policy.action_bounds is not None:
        x = graph.op("Min", x, graph.const("action_high", policy.action_bounds[1]))
        graph.op("Max", x, graph.const("action_low", policy.action_bounds[0]), output=ACTION_OUTPUT)
    return onnx_proto.model(
        nodes=graph.nodes, initializers=graph.initializers, graph_name=f"embodia_{policy.spec['algo']}_mlp",
        inputs=[onnx_proto.value_info(OBS_INPUT, onnx_proto.FLOAT, ["batch", policy.obs_dim])],
        outputs=[onnx_proto.value_info(ACTION_OUTPUT, onnx_proto.FLOAT, ["batch", policy.act_dim])],
        opset=OPSET, producer=("embodia", __version__), metadata=metadata_from_spec(policy.spec).to_onnx())


def _onnx_activation(graph: _GraphBuilder, name: str, x: str) -> str:
    if name == "silu":
        return graph.op("Mul", x, graph.op("Sigmoid", x))
    return graph.op({"tanh": "Tanh", "relu": "Relu", "elu": "Elu"}[name], x)


# ---------------------------------------------------------------------------------------------- export
def write_mlp_onnx(policy: MlpPolicy, out: str | Path, *, verify: Callable[[Path], None] | None = None) -> Path:
    """Write `policy` as `out` (.onnx) atomically; `verify(tmp_path)` may refuse the file by raising."""
    with atomic_file(out, suffix=".onnx") as tmp:
        Path(tmp).write_bytes(onnx_bytes(policy))
        if verify is not None:
            verify(Path(tmp))
    return Path(out)


def mlp_parity(policy: MlpPolicy, onnx_path: str | Path, num_obs: int = 1000, seed: int = 0) -> float:
    """Max |ONNX Runtime - NumPy| over `num_obs` random observations scaled around the normalizer's range."""
    rng = np.random.default_rng(seed)
    obs = (policy.obs_center + policy.obs_scale * rng.normal(0.0, 3.0, (num_obs, policy.obs_dim))).astype(np.float32)
    return float(np.max(np.abs(OnnxPolicy(onnx_path).act(obs) - policy.act(obs))))
