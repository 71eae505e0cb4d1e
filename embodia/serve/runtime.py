"""An exported ONNX policy loaded into ONNX Runtime, with the observation/action spec read from its metadata."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

INPUT_NAME = "obs"
OUTPUT_NAME = "action"


class InvalidModelError(ValueError):
    """The model file exists but is not an embodia ONNX policy."""


class PolicySpec(BaseModel):
    """What a served policy takes and returns, read from the ONNX file's `embodia.*` metadata."""

    model_config = ConfigDict(extra="forbid")

    task: str = Field(description="task the policy was trained on (metadata embodia.task)")
    algo: str = Field(description="algorithm that produced it (metadata embodia.algo)")
    version: str = Field(description="embodia version that exported it (metadata embodia.version)")
    obs_dim: int = Field(gt=0, description="observation size; requests carry (obs_dim,) or (batch, obs_dim)")
    act_dim: int = Field(gt=0, description="action size; replies carry (act_dim,) or (batch, act_dim)")
    action_low: list[float] | None = Field(description="lower action bounds, act_dim values, or None if unknown")
    action_high: list[float] | None = Field(description="upper action bounds, act_dim values, or None if unknown")
    model_file: str = Field(description="file name of the ONNX model")
    model_sha256: str = Field(description="SHA-256 of the ONNX file, to tell two deployments apart")


def session_options(intra_op_threads: int = 1):
    """ONNX Runtime options for one-request-at-a-time serving: few threads, sequential graph execution."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return options


class OnnxPolicy:
    """A batched policy on ONNX Runtime: `act(obs (B, obs_dim) float32) -> (B, act_dim) float32`."""

    def __init__(self, model_path: str | Path, intra_op_threads: int = 1):
        self.path = Path(model_path)
        self.session = _open_session(self.path, intra_op_threads)
        self.spec = _read_spec(self.path, self.session)
        self.obs_dim = self.spec.obs_dim
        self.act_dim = self.spec.act_dim
        self._outputs = [OUTPUT_NAME]

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Deterministic actions for a batch of observations; obs must already be float32 (B, obs_dim)."""
        return self.session.run(self._outputs, {INPUT_NAME: obs})[0]


def _open_session(path: Path, intra_op_threads: int):
    import onnxruntime as ort

    if not path.exists():
        raise FileNotFoundError(f"model file {path} does not exist; pass the .onnx file written by `embodia export`")
    if path.is_dir():
        raise IsADirectoryError(f"model path {path} is a directory; pass the .onnx file written by `embodia export`")
    try:
        return ort.InferenceSession(str(path), sess_options=session_options(intra_op_threads),
                                    providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types for bad protobufs / graphs
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InvalidModelError(f"model file {path} is not a valid ONNX model ({first_line}); "
                                "re-export it with `embodia export`") from error


def _read_spec(path: Path, session) -> PolicySpec:
    inputs = {node.name: node for node in session.get_inputs()}
    outputs = {node.name: node for node in session.get_outputs()}
    if INPUT_NAME not in inputs or OUTPUT_NAME not in outputs:
        raise InvalidModelError(f"model file {path} has inputs {sorted(inputs)} and outputs {sorted(outputs)}; an "
                                f"embodia policy needs input '{INPUT_NAME}' and output '{OUTPUT_NAME}' "
                                "(export it with `embodia export`)")
    for node in (inputs[INPUT_NAME], outputs[OUTPUT_NAME]):
        if node.type != "tensor(float)":
            raise InvalidModelError(f"model file {path}: '{node.name}' has type {node.type}, expected tensor(float)")
    metadata = session.get_modelmeta().custom_metadata_map
    obs_dim = _dim(path, metadata, "embodia.obs_dim", inputs[INPUT_NAME].shape)
    act_dim = _dim(path, metadata, "embodia.act_dim", outputs[OUTPUT_NAME].shape)
    return PolicySpec(
        task=metadata.get("embodia.task", "unknown"),
        algo=metadata.get("embodia.algo", "unknown"),
        version=metadata.get("embodia.version", "unknown"),
        obs_dim=obs_dim,
        act_dim=act_dim,
        action_low=_bounds(path, metadata, "embodia.action_low", act_dim),
        action_high=_bounds(path, metadata, "embodia.action_high", act_dim),
        model_file=path.name,
        model_sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
    )


def _dim(path: Path, metadata: dict[str, str], key: str, graph_shape: list) -> int:
    """A feature size from metadata, checked against the graph's static last axis when it has one."""
    graph_dim = graph_shape[-1] if len(graph_shape) == 2 and isinstance(graph_shape[-1], int) else None
    if key not in metadata:
        if graph_dim is None:
            raise InvalidModelError(f"model file {path} has no metadata '{key}' and no static feature axis; "
                                    "re-export it with `embodia export`")
        return graph_dim
    try:
        value = int(metadata[key])
    except ValueError:
        raise InvalidModelError(f"model file {path}: metadata '{key}'={metadata[key]!r} is not an integer") from None
    if graph_dim is not None and graph_dim != value:
        raise InvalidModelError(f"model file {path}: metadata '{key}'={value} disagrees with the graph's "
                                f"feature axis {graph_dim}; re-export it with `embodia export`")
    return value


def _bounds(path: Path, metadata: dict[str, str], key: str, act_dim: int) -> list[float] | None:
    if key not in metadata:
        return None
    try:
        values = json.loads(metadata[key])
        bounds = [float(value) for value in values]
    except (ValueError, TypeError):
        raise InvalidModelError(f"model file {path}: metadata '{key}' must be a JSON list of {act_dim} numbers, "
                                f"got {metadata[key][:80]!r}") from None
    if len(bounds) != act_dim:
        raise InvalidModelError(f"model file {path}: metadata '{key}' has {len(bounds)} values, expected act_dim="
                                f"{act_dim}")
    return bounds
