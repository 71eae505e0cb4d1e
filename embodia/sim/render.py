"""Headless offscreen rendering of any subset of a batch, from named cameras, as uint8 arrays."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from typing import Literal

from embodia.core.errors import UserError
from embodia.sim.gl import choose_gl_backend, configure_gl, gl_failure_hint, mujoco_gl_mismatch  # noqa: F401

import numpy as np

Quality = Literal["fast", "full"]


# largest frame side we render: every GL driver we support (EGL, OSMesa) allocates offscreen buffers this big
MAX_RENDER_SIZE = 4096


class RenderError(RuntimeError):
    """Offscreen rendering is unavailable; the message names the cause and the fix."""


class BatchRenderer:
    """Renders envs of a BatchSim one at a time through one offscreen context (no shadows by default).

    Each env's scene is built from its own MjModel, so per-env visual randomization shows in the images.
    One renderer (one GL context, ~0.2 s CPU to open on software GL) can serve several batches of the same scene
    in turn (`use_sim`), and can draw states recorded earlier (`render_states`), e.g. a report's best episode.

    `quality="fast"` turns off shadows, reflections and skybox: on software GL that is ~15x faster.
    `multisample` sets the offscreen anti-aliasing samples (the model's `offsamples`, 4 by default); 0 makes
    software GL ~3x faster per frame, which interactive streams (teleoperation) need.
    """

    def __init__(self, sim, *, width: int = 128, height: int = 128, quality: Quality = "fast",
                 multisample: int | None = None) -> None:
        import mujoco

        configure_gl()  # adopts a MuJoCo that was imported before embodia, where it can
        self.sim = sim
        self.size = (width, height)
        self.quality = quality
        model = sim.model
        if not (1 <= width <= MAX_RENDER_SIZE and 1 <= height <= MAX_RENDER_SIZE):
            raise UserError(f"render size {width}x{height}: width and height must be in [1, {MAX_RENDER_SIZE}] pixels")
        if width > model.vis.global_.offwidth or height > model.vis.global_.offheight:
            model.vis.global_.offwidth = max(width, model.vis.global_.offwidth)
            model.vis.global_.offheight = max(height, model.vis.global_.offheight)
        model_buffer = (model.vis.quality.offsamples, model.vis.global_.offwidth, model.vis.global_.offheight)
        if multisample is not None:
            if not 0 <= multisample <= 16:
                raise UserError(f"multisample={multisample}: use 0 (off) to 16 anti-aliasing samples")
            model.vis.quality.offsamples = multisample
        # an offscreen buffer the frame's size, not the model's (640x480 in most scenes): software GL clears
        # the whole buffer every frame, ~25 % of a 240x180 frame's CPU; the pixels are the same
        model.vis.global_.offwidth, model.vis.global_.offheight = width, height
        try:
            self._renderer = mujoco.Renderer(model, height=height, width=width)
        except Exception as error:
            raise RenderError(
                f"cannot open an offscreen GL context with MUJOCO_GL={os.environ.get('MUJOCO_GL')!r}: {error}. "
                + gl_failure_hint()
            ) from None
        finally:  # samples and size live in this renderer's GL buffers; other renderers of the model keep the model's
            model.vis.quality.offsamples, model.vis.global_.offwidth, model.vis.global_.offheight = model_buffer
        self._data = mujoco.MjData(model)
        self._option = mujoco.MjvOption()
        self._assets = render_assets_key(model)
        self._apply_quality()

    def renders_like(self, model) -> bool:
        """Whether `model` draws right with this renderer's GL resources (same meshes, textures, heightfields,
        skins and fog); colours, lights and cameras need not match, they come from each env's model per frame."""
        return render_assets_key(model) == self._assets

    def use_sim(self, sim) -> None:
        """Draw the envs of `sim` from now on, through this renderer's GL context (no new context opened)."""
        if not self.renders_like(sim.model):
            raise RenderError("this renderer was made for another scene (its meshes or textures differ); "
                              "make a BatchRenderer for this sim instead")
        self.sim = sim

    def _camera(self, camera: str | int):
        """An MjvCamera for a camera name or id (-1: the model's default free camera)."""
        import mujoco

        model = self.sim.model
        camera_id = camera if isinstance(camera, int) else mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera)
        if camera_id < -1 or camera_id >= model.ncam or (camera_id == -1 and camera != -1):
            names = [model.camera(i).name for i in range(model.ncam)]
            raise UserError(f"unknown camera {camera!r}; this model has cameras {names} (or -1 for the free camera)")
        view = mujoco.MjvCamera()
        if camera_id == -1:
            mujoco.mjv_defaultFreeCamera(model, view)
        else:
            view.type = mujoco.mjtCamera.mjCAMERA_FIXED
            view.fixedcamid = camera_id
        return view

    def _apply_quality(self) -> None:
        import mujoco

        if self.quality == "full":
            return
        flags = self._renderer.scene.flags
        flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
        flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
        flags[mujoco.mjtRndFlag.mjRND_SKYBOX] = False

    def render(self, env_ids: np.ndarray, camera: str | int = -1, depth: bool = False) -> np.ndarray:
        """(k, H, W, 3) uint8 RGB, or (k, H, W) float32 depth in metres, for each env in `env_ids`."""
        sim = self.sim
        ids = np.asarray(env_ids, dtype=np.int64)
        # the scene comes from each env's own model, so per-env colours, lights and camera poses show
        return self.render_states([sim.models[i] for i in ids], sim.state[ids], sim.mocap_pos[ids],
                                  sim.mocap_quat[ids], camera=camera, depth=depth)

    def render_states(self, models: Sequence, states: np.ndarray, mocap_pos: np.ndarray | None = None,
                      mocap_quat: np.ndarray | None = None, camera: str | int = -1, depth: bool = False) -> np.ndarray:
        """Images of k physics states (rows of `BatchSim.state`), each under its own model, with mocap poses
        (k, nmocap, 3|4) where the model has mocap bodies: draws states recorded while episodes ran."""
        import mujoco

        from embodia.sim.batch import STATE_SPEC

        view = self._camera(camera)
        width, height = self.size
        out = np.zeros((len(models), height, width) if depth else (len(models), height, width, 3),
                       dtype=np.float32 if depth else np.uint8)
        if depth:
            self._renderer.enable_depth_rendering()
        for k, model in enumerate(models):
            mujoco.mj_setState(model, self._data, states[k], STATE_SPEC)
            if model.nmocap:
                self._data.mocap_pos[:] = mocap_pos[k]
                self._data.mocap_quat[:] = mocap_quat[k]
            mujoco.mj_forward(model, self._data)
            mujoco.mjv_updateScene(model, self._data, self._option, None, view, mujoco.mjtCatBit.mjCAT_ALL,
                                   self._renderer.scene)
            self._renderer.render(out=out[k])
        if depth:
            self._renderer.disable_depth_rendering()
        return out

    def close(self) -> None:
        self._renderer.close()


# the parts of a model an MjrContext uploads at creation (counts and data); per-frame things (colours, lights,
# cameras, materials) are read from the model each frame and may differ
_ASSET_SIZES = ("nmesh", "nmeshvert", "nmeshface", "ntex", "ntexdata", "nhfield", "nhfielddata", "nskin",
                "nskinvert", "nflex")
_ASSET_ARRAYS = ("mesh_vert", "mesh_face", "tex_data", "hfield_data", "skin_vert")


def render_assets_key(model) -> tuple:
    """What must match for two models to share a renderer: asset sizes, a digest of asset data, and the fog
    and shadow settings the GL context copies at creation."""
    digest = hashlib.blake2b(digest_size=16)
    for name in _ASSET_ARRAYS:
        if hasattr(model, name):
            digest.update(np.ascontiguousarray(getattr(model, name)).tobytes())
    visual = model.vis.map
    fog = (visual.fogstart, visual.fogend, visual.shadowclip, visual.shadowscale, model.stat.extent,
           tuple(model.vis.rgba.fog))
    return tuple(getattr(model, name, 0) for name in _ASSET_SIZES) + fog + (digest.hexdigest(),)
