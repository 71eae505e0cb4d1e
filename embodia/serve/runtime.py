"""The model a server serves: embodia's one ONNX policy (`embodia.core.policy.OnnxPolicy`) plus the file
identity (name, sha256) that /metadata reports so two deployments can be told apart."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from embodia.core.manifest import hash_file
from embodia.core.policy import OnnxPolicy, PolicyMetadata


@dataclass(frozen=True)
class ServedModel:
    """A loaded, validated policy and the file it came from."""

    policy: OnnxPolicy
    file: str
    sha256: str

    @property
    def metadata(self) -> PolicyMetadata:
        """The policy's validated `embodia.*` metadata (dims, bounds, task, image keys and size)."""
        return self.policy.metadata


def load_model(path: str | Path, intra_op_threads: int = 1) -> ServedModel:
    """Open and validate an exported policy (a bad file is a `CheckpointError` naming it and the fix)."""
    policy = OnnxPolicy(path, intra_op_threads=intra_op_threads)
    return ServedModel(policy=policy, file=policy.path.name, sha256=hash_file(policy.path))
