"""Deployable policies from checkpoints: `load_policy(path)` gives state and camera policies alike.

A checkpoint (any algorithm) becomes a `TorchPolicy`: the algorithm's stateless deterministic actor with
normalization folded in, `act(obs[, images]) -> actions` as in `embodia.core.policy.Policy`. An `.onnx`
file becomes the core `OnnxPolicy`. `load_trained_policy` gives an imitation policy with its action-chunk
queue (what rollouts of BC/diffusion use).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from embodia.core.errors import CheckpointError, UserError
from embodia.core.policy import OnnxPolicy, check_obs
from embodia.learn.checkpoint import CONFIG_FILE, load_checkpoint, policy_section
from embodia.learn.registry import get_algorithm


class TorchPolicy:
    """A trained actor with normalization folded in; deterministic actions in the env's bounds.

    Camera policies (`image_keys` non-empty) take `images={key: (B, H, W, 3) uint8}`, resized to `image_size`.
    """

    def __init__(self, actor: nn.Module, spec: dict[str, Any]) -> None:
        self.actor = actor.eval()
        self.spec = spec
        self.task: str = spec.get("task", "")
        self.algo: str = spec.get("algo", "")
        self.name = self.algo
        self.obs_dim = int(spec["obs_dim"])
        self.act_dim = int(spec["act_dim"])
        self.action_low = np.asarray(spec["action_low"], dtype=np.float32)
        self.action_high = np.asarray(spec["action_high"], dtype=np.float32)
        self.image_keys: tuple[str, ...] = tuple(spec.get("image_keys") or ())
        self.image_size: int | None = spec.get("image_size")

    def act(self, obs: np.ndarray, images: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """Actions (B, act_dim) float32 for observations (B, obs_dim); a single (obs_dim,) gives (act_dim,)."""
        array = check_obs(obs, self.obs_dim)
        batch = np.atleast_2d(array)
        inputs = [torch.from_numpy(np.ascontiguousarray(batch))]
        if self.image_keys:
            inputs += self._image_tensors(images, len(batch))
        with torch.no_grad():
            action = self.actor(*inputs).numpy()
        return action[0] if array.ndim == 1 else action

    __call__ = act

    def _image_tensors(self, images: Mapping[str, np.ndarray] | None, batch: int) -> list[torch.Tensor]:
        if images is None:
            raise UserError(f"this policy needs camera images {list(self.image_keys)}: call act(obs, images) or wrap "
                             "it in embodia.learn.vision.CameraPolicyAdapter(policy, env)")
        missing = [key for key in self.image_keys if key not in images]
        if missing:
            raise UserError(f"missing image {missing[0]!r}; this policy needs {list(self.image_keys)}")
        # the imitation stack (pyarrow, MuJoCo): imported only for camera policies
        from embodia.learn.vision import resize_images

        tensors = []
        for key in self.image_keys:
            frames = np.asarray(images[key])
            frames = frames[None] if frames.ndim == 3 else frames
            if frames.ndim != 4 or frames.shape[0] != batch or frames.shape[-1] != 3 or frames.dtype != np.uint8:
                raise UserError(f"image {key!r} has shape {frames.shape} {frames.dtype}, expected ({batch}, H, W, 3) "
                                 "uint8")
            tensors.append(torch.from_numpy(np.ascontiguousarray(resize_images(frames, self.image_size))))
        return tensors

    def reset(self, env_ids: np.ndarray | None = None) -> None:
        """Stateless: nothing to reset."""


def load_policy(path: str | Path) -> TorchPolicy | OnnxPolicy:
    """A policy from a run directory, a checkpoint directory (any algorithm) or an exported `.onnx` file."""
    path = Path(path)
    if path.suffix == ".onnx":
        return OnnxPolicy(path)
    loaded = load_checkpoint(path, training_state=False)
    spec = policy_section(loaded)
    return TorchPolicy(build_deployed_actor(loaded["model"], loaded["normalizer"], spec, loaded["path"]), spec)


def build_deployed_actor(model: dict[str, torch.Tensor], normalizer: dict[str, np.ndarray], spec: dict[str, Any],
                         ckpt: Path) -> nn.Module:
    """The registered algorithm's stateless deterministic actor for a checkpoint's weights."""
    try:
        builder = get_algorithm(spec["algo"]).deployed_actor
    except ValueError:
        raise CheckpointError(f"{ckpt / CONFIG_FILE} names algo {spec['algo']!r}, which embodia.learn cannot load") from None
    try:
        return builder(model, normalizer, spec)
    except (KeyError, RuntimeError, ValueError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise CheckpointError(f"checkpoint {ckpt} does not match its config ({first}); the files are from "
                              "different runs") from error


def load_trained_policy(path: str | Path) -> nn.Module:
    """An imitation policy (BC, vision BC, diffusion) with its action-chunk queue, from its checkpoint."""
    # pyarrow, MuJoCo: imported only for imitation checkpoints
    from embodia.learn.il_common import read_il_checkpoint

    spec, model, normalizers = read_il_checkpoint(path)
    return get_algorithm(spec["algo"], kind="imitation").policy_from_parts(spec, model, normalizers)
