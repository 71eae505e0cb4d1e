"""embodia.core: the bottom layer every other package builds on; imports neither torch nor mujoco.

Errors (user vs internal), atomic file/directory writes, the policy + ONNX metadata contract,
artifact manifests with provenance, and the progress/cancellation `Reporter` protocol.
"""

from embodia.core.atomic import atomic_dir, atomic_write_bytes, atomic_write_json, atomic_write_text
from embodia.core.errors import Cancelled, CheckpointError, ConfigError, DatasetFormatError, EmbodiaError, UserError
from embodia.core.manifest import Manifest, hash_file, hash_tree
from embodia.core.reporter import NullReporter, Reporter

__all__ = [
    "Cancelled", "CheckpointError", "ConfigError", "DatasetFormatError", "EmbodiaError", "Manifest", "NullReporter",
    "Reporter", "UserError", "atomic_dir", "atomic_write_bytes", "atomic_write_json", "atomic_write_text",
    "hash_file", "hash_tree",
]
