"""Policies from any source behind one interface: checkpoints, ONNX files, experts, random, callables, servers.

Spec strings: a checkpoint directory or `.onnx` file, `expert:<task>`, `random`, `module:function` (or
`path/to/file.py:function`), `http://host:port` (a running `embodia serve`). A camera policy (a vision BC
checkpoint, or an ONNX file with one uint8 input per image key) renders its cameras from the env it is bound
to, so a scenario's lighting and camera changes reach it.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from embodia.core.errors import ConfigError
from embodia.core.policy import OnnxPolicy, RandomPolicy  # noqa: F401  (RandomPolicy: the type of `random`)
from embodia.tasks.rollout import EnvRandomPolicy

SPEC_FORMS = ("a checkpoint directory", "a .onnx file", "expert:<task>", "random", "module:function",
              "path/to/file.py:function", "http://host:port")


class PolicySpecError(ConfigError):
    """A policy spec that does not name a usable policy."""


class CallablePolicy:
    """A plain function obs (B, obs_dim) -> actions (B, act_dim) seen as a policy."""

    image_keys: tuple[str, ...] = ()

    def __init__(self, function: Callable[[np.ndarray], np.ndarray], name: str = "") -> None:
        self.function = function
        self.name = name or getattr(function, "__name__", "callable")
        self.obs_dim = None
        self.act_dim = None

    def act(self, obs: np.ndarray, images: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        return np.asarray(self.function(obs))


class ExpertPolicy:
    """A scripted expert from embodia.data.experts, built for each env it is bound to."""

    def __init__(self, task: str) -> None:
        self.task = task
        self.name = f"expert:{task}"
        self.obs_dim = None
        self.act_dim = None
        self._expert = None

    def bind_env(self, env) -> None:
        """Build the expert for this env (experts read the simulator state)."""
        from embodia.data.experts import make_expert

        self._expert = make_expert(self.task, env)
        self.obs_dim, self.act_dim = env.obs_dim, env.action_dim

    def reset(self, env_ids: np.ndarray) -> None:
        if self._expert is not None and hasattr(self._expert, "reset"):
            self._expert.reset(env_ids)

    def act(self, obs: np.ndarray) -> np.ndarray:
        if self._expert is None:
            raise RuntimeError(f"{self.name}: bind_env(env) must be called before act()")
        return np.asarray(self._expert.act(obs))


class RemotePolicy:
    """A policy served by `embodia serve`, reached through embodia.serve.client.PolicyClient; a served camera
    policy reports its `image_keys` and is then evaluated through `CameraPolicy` (it is sent rendered images)."""

    def __init__(self, url: str) -> None:
        from embodia.serve.client import PolicyClient

        self.url = url
        self.name = url
        self.client = PolicyClient(url)
        self.obs_dim = self.client.obs_dim
        self.act_dim = self.client.act_dim
        self.task = self.client.task
        self.image_keys = tuple(self.client.image_keys)
        self.image_size = self.client.spec.get("image_size")

    def act(self, obs: np.ndarray, images: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        return np.asarray(self.client.act(np.asarray(obs, dtype=np.float32), images=images), dtype=np.float64)

    def reset(self, env_ids: np.ndarray | None = None) -> None:
        """Served policies are stateless."""


class CameraPolicy:
    """A camera policy (`image_keys` + `image_size`: a vision BC checkpoint or a camera ONNX file) that renders its
    cameras from the env it is bound to, so a scenario's lighting and camera changes reach what it sees."""

    def __init__(self, policy: Any, name: str) -> None:
        self.policy = policy
        self.name = name
        self.task = getattr(policy, "task", None)
        self.obs_dim, self.act_dim = policy.obs_dim, policy.act_dim
        self.image_keys = list(policy.image_keys)
        self.adapter = None

    def bind_env(self, env) -> None:
        """Render this env's cameras (with the scenario's render-model changes) for every action from now on."""
        from embodia.learn.vision import CameraPolicyAdapter

        self.adapter = CameraPolicyAdapter(self.policy, env)

    def reset(self, env_ids: np.ndarray) -> None:
        self.policy.reset(env_ids)

    def act(self, obs: np.ndarray) -> np.ndarray:
        if self.adapter is None:
            raise RuntimeError(f"camera policy {self.name}: bind_env(env) must be called before act() "
                               f"(it renders {self.image_keys} from that env)")
        return np.asarray(self.adapter.act(obs), dtype=np.float64)


def is_camera_checkpoint(path: str | Path) -> bool:
    """True for a checkpoint directory whose config.json policy spec has non-empty `bc.image_keys`."""
    config_path = Path(path) / "config.json"
    if not config_path.is_file():
        return False
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as error:
        raise PolicySpecError(f"{config_path} is not valid JSON ({error}); re-save the checkpoint") from None
    spec = config.get("policy") if isinstance(config, dict) else None
    bc = spec.get("bc") if isinstance(spec, dict) else None
    return isinstance(bc, dict) and bool(bc.get("image_keys"))


def resolve_policy(spec: Any) -> Any:
    """A policy (object with act(obs) -> actions) from a spec string, a policy object or a callable."""
    if not isinstance(spec, (str, Path)):
        if hasattr(spec, "act"):
            return spec
        if callable(spec):
            return CallablePolicy(spec)
        raise PolicySpecError(f"policy {spec!r} has no act(obs) method and is not callable")
    text = str(spec).strip()
    if text == "random":
        return EnvRandomPolicy()
    if text.startswith("expert:"):
        return ExpertPolicy(text.removeprefix("expert:"))
    if text.startswith(("http://", "https://")):
        remote = RemotePolicy(text)
        return CameraPolicy(remote, text) if remote.image_keys else remote
    path = Path(text)
    if path.exists():
        return _load_file_policy(path)
    if ":" in text:
        return _load_callable(text)
    raise PolicySpecError(f"policy {text!r} is not a file or directory and no other form matches; "
                            f"give one of: {', '.join(SPEC_FORMS)}")


def policy_name(policy: Any, spec: Any = None) -> str:
    """A short label for reports."""
    if isinstance(spec, (str, Path)):
        return str(spec)
    return str(getattr(policy, "name", None) or type(policy).__name__)


def metrics_file(spec: Any) -> Path | None:
    """The training run's metrics.jsonl next to a checkpoint directory or ONNX file, if there is one."""
    if not isinstance(spec, (str, Path)) or not Path(spec).exists():
        return None
    path = Path(spec)
    for folder in (path, path.parent, path.parent.parent) if path.is_dir() else (path.parent, path.parent.parent):
        candidate = folder / "metrics.jsonl"
        if candidate.is_file():
            return candidate
    return None


def _load_file_policy(path: Path) -> Any:
    """An ONNX file (the core contract) or a checkpoint directory; camera policies render from the bound env."""
    if path.suffix == ".onnx":
        policy = OnnxPolicy(path)
    elif path.is_dir() and is_camera_checkpoint(path):
        from embodia.learn.bc import load_bc

        policy = load_bc(path)
    elif path.is_dir():
        from embodia.learn import load_policy

        policy = load_policy(path)
    else:
        raise PolicySpecError(f"{path} is neither an embodia checkpoint directory nor a .onnx file")
    if getattr(policy, "image_keys", ()):
        return CameraPolicy(policy, path.name)
    if not hasattr(policy, "name"):
        policy.name = path.name
    return policy


def _load_callable(text: str) -> Any:
    module_part, _, attribute = text.rpartition(":")
    if not module_part or not attribute:
        raise PolicySpecError(f"policy {text!r}: write a callable as module:function")
    module = _import_module(module_part, text)
    if not hasattr(module, attribute):
        raise PolicySpecError(f"policy {text!r}: module {module_part!r} has no attribute {attribute!r}")
    target = getattr(module, attribute)
    if isinstance(target, type):
        target = target()
    if hasattr(target, "act"):
        return target
    if callable(target):
        return CallablePolicy(target, name=text)
    raise PolicySpecError(f"policy {text!r} is neither a policy object nor a callable")


def _import_module(module_part: str, text: str):
    if module_part.endswith(".py"):
        path = Path(module_part)
        if not path.is_file():
            raise PolicySpecError(f"policy {text!r}: file {module_part} not found")
        spec = importlib.util.spec_from_file_location(f"embodia_user_policy_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    try:
        return importlib.import_module(module_part)
    except ModuleNotFoundError as error:
        raise PolicySpecError(f"policy {text!r}: cannot import module {module_part!r} ({error}); "
                              f"the accepted forms are {', '.join(SPEC_FORMS)}") from None

