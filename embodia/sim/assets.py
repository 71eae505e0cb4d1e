"""Load MuJoCo models from MJCF files or strings (with their includes and meshes) and make URDFs controllable.

Errors name the file, the line and the fix.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Literal

import mujoco
import numpy as np

from embodia.core.errors import UserError

ASSET_DIR = Path(__file__).resolve().parent.parent / "tasks" / "assets"
_MAX_ASSET_BYTES = 512 * 2**20


class ModelLoadError(UserError):
    """An MJCF/URDF model could not be loaded; the message names the source, line and problem."""


def _describe_mujoco_error(source: str, error: Exception) -> str:
    text = str(error).strip()
    line = re.search(r"[Ll]ine\s*=?\s*(\d+)", text)
    where = f"{source}, line {line.group(1)}" if line else source
    first = text.splitlines()[0] if text else type(error).__name__
    if re.search(r"resource not found|could not open file|error opening file|file not found|no such file", text, re.IGNORECASE):
        fix = ("a file the model references was not found: load it from its path, or pass base_dir= (the directory "
               "its relative paths start from) or assets={name: bytes}")
    else:
        fix = "fix the model file and try again"
    return f"cannot load model {where}: {first} ({fix}; full MuJoCo message: {text!r})"


def load_model(source: str | Path, *, assets: dict[str, bytes] | None = None,
               base_dir: str | Path | None = None) -> mujoco.MjModel:
    """An MjModel from an MJCF/URDF path, a bundled asset name (e.g. 'arm.xml') or an XML string.

    For a string, `base_dir` is where its `<include>`s, meshes and textures are read from (default: the current
    directory); `assets` maps file names to bytes for files that exist nowhere on disk. A `.urdf` path goes
    through `from_urdf` with its defaults, so it comes with actuators.
    """
    if isinstance(source, str) and source.lstrip().startswith("<"):
        files = referenced_files(source, Path(base_dir) if base_dir is not None else Path.cwd())
        files.update(assets or {})
        try:
            return mujoco.MjModel.from_xml_string(source, files or None)
        except Exception as error:  # MuJoCo raises ValueError with a parser message
            raise ModelLoadError(_describe_mujoco_error("<xml string>", error)) from None
    path = resolve_model_path(source)
    if path.suffix.lower() == ".urdf":
        return from_urdf(path)
    try:
        return mujoco.MjModel.from_xml_path(str(path), assets or None)
    except Exception as error:
        raise ModelLoadError(_describe_mujoco_error(str(path), error)) from None


def resolve_model_path(source: str | Path) -> Path:
    """An existing model file: the path itself, else a bundled asset of that name; clear errors otherwise."""
    path = Path(source).expanduser()
    if not path.is_absolute() and not path.exists() and (ASSET_DIR / path).exists():
        path = ASSET_DIR / path
    if not path.exists():
        raise ModelLoadError(f"model file not found: {path} (give a path to an existing .xml/.urdf file or a "
                             "bundled asset name)")
    if path.is_dir():
        raise ModelLoadError(f"model path is a directory, not a file: {path} (point at the .xml file inside it)")
    return path


def referenced_files(xml: str, base_dir: Path) -> dict[str, bytes]:
    """Every file an MJCF string names (includes, recursively; meshes, textures, skins, heightfields) that exists
    under `base_dir`, keyed as MuJoCo looks them up in its virtual file system."""
    found: dict[str, bytes] = {}
    pending = [xml]
    total = 0
    while pending:
        try:
            root = ET.fromstring(pending.pop())
        except ET.ParseError:
            continue  # MuJoCo's own parser reports the error with a line number
        compiler = {k: v for element in root.iter("compiler") for k, v in element.attrib.items()}
        prefixes = ["", compiler.get("meshdir", ""), compiler.get("texturedir", ""), compiler.get("assetdir", "")]
        for element in root.iter():
            name = element.attrib.get("file")
            if not name:
                continue
            for prefix in dict.fromkeys(prefixes):
                key = str(Path(prefix) / name) if prefix else name
                candidate = base_dir / key
                if key in found or not candidate.is_file():
                    continue
                data = candidate.read_bytes()
                total += len(data)
                if total > _MAX_ASSET_BYTES:
                    raise ModelLoadError(f"files referenced by the model under {base_dir} exceed "
                                         f"{_MAX_ASSET_BYTES >> 20} MB; load the model from its path instead")
                found[key] = data
                if element.tag == "include":
                    pending.append(data.decode("utf-8", errors="replace"))
    return found


# ---------------------------------------------------------------------------------------------- URDF
def from_urdf(path: str | Path, *, actuators: Literal["position", "motor"] = "position", kp: float = 20.0,
              floor: bool = True, free_base: bool = False, camera: str | None = "front",
              light: bool = True) -> mujoco.MjModel:
    """A controllable MjModel from a URDF: one actuator per hinge/slide joint, plus floor, light and camera.

    MuJoCo's URDF importer gives no actuators. `actuators="position"` adds position servos (gain `kp`, control
    range = the joint's limits, else +-pi); `"motor"` adds torque motors (control range = the URDF effort limit,
    else +-1). `free_base` lets the root link move (a legged or mobile robot); `camera` names a fixed camera
    that looks at the whole robot (None: no camera).
    """
    spec = urdf_spec(path, actuators=actuators, kp=kp, floor=floor, free_base=free_base, camera=camera, light=light)
    try:
        return spec.compile()
    except Exception as error:
        raise ModelLoadError(_describe_mujoco_error(str(path), error)) from None


def urdf_spec(path: str | Path, *, actuators: Literal["position", "motor"] = "position", kp: float = 20.0,
              floor: bool = True, free_base: bool = False, camera: str | None = "front",
              light: bool = True) -> mujoco.MjSpec:
    """The `mujoco.MjSpec` that `from_urdf` compiles, for further editing."""
    if actuators not in ("position", "motor"):
        raise ModelLoadError(f"actuators={actuators!r}; use 'position' (servos) or 'motor' (torques)")
    if not (math.isfinite(kp) and kp > 0):
        raise ModelLoadError(f"kp={kp} must be a positive finite gain")
    source = resolve_model_path(path)
    try:
        spec = mujoco.MjSpec.from_file(str(source))
    except Exception as error:
        raise ModelLoadError(_describe_mujoco_error(str(source), error)) from None
    _keep_links_apart_from_their_parents(spec)
    if free_base:
        _add_free_base(spec, source)
    _add_actuators(spec, actuators, kp)
    if floor or camera or light:
        _add_scene(spec, floor=floor, camera=camera, light=light)
    return spec


def _keep_links_apart_from_their_parents(spec: mujoco.MjSpec) -> None:
    """Keep the base link a body of its own and exclude contacts of every link with its parent link.

    MuJoCo's parent filter skips parents welded to the world, so a fixed base would otherwise collide with the
    links it carries (adjacent URDF links usually overlap at their joints); the floor still collides with all.
    """
    spec.compiler.fusestatic = False
    world = spec.worldbody.name
    for body in spec.bodies[1:]:
        if body.parent.name != world:
            spec.add_exclude(bodyname1=body.parent.name, bodyname2=body.name)


def _add_free_base(spec: mujoco.MjSpec, source: Path) -> None:
    roots = [body for body in spec.worldbody.bodies]
    if len(roots) != 1:
        raise ModelLoadError(f"{source}: free_base needs one root link, found {[b.name for b in roots]}")
    if not any(j.type == mujoco.mjtJoint.mjJNT_FREE for j in roots[0].joints):
        roots[0].add_freejoint()


def _add_actuators(spec: mujoco.MjSpec, kind: str, kp: float) -> None:
    movable = (mujoco.mjtJoint.mjJNT_HINGE, mujoco.mjtJoint.mjJNT_SLIDE)
    for joint in spec.joints:
        if joint.type not in movable:
            continue
        actuator = spec.add_actuator(name=f"{joint.name}_{'pos' if kind == 'position' else 'motor'}",
                                     target=joint.name, trntype=mujoco.mjtTrn.mjTRN_JOINT)
        actuator.ctrllimited = mujoco.mjtLimited.mjLIMITED_TRUE
        if kind == "position":
            actuator.set_to_position(kp=kp, kv=0.1 * kp)
            limited = joint.limited != mujoco.mjtLimited.mjLIMITED_FALSE and joint.range[0] < joint.range[1]
            actuator.ctrlrange = joint.range if limited else np.array([-math.pi, math.pi])
        else:
            actuator.set_to_motor()
            effort = joint.actfrcrange
            actuator.ctrlrange = effort if effort[0] < effort[1] else np.array([-1.0, 1.0])


def _add_scene(spec: mujoco.MjSpec, *, floor: bool, camera: str | None, light: bool) -> None:
    model = spec.compile()
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    solid = model.geom_type != mujoco.mjtGeom.mjGEOM_PLANE
    lowest = float(np.min(data.geom_xpos[solid, 2] - model.geom_rbound[solid])) if solid.any() else 0.0
    center = data.subtree_com[0].copy()
    extent = max(float(model.stat.extent), 0.2)
    if floor:
        spec.worldbody.add_geom(name="floor", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[0, 0, 0.05],
                                pos=[0, 0, min(lowest, 0.0)], rgba=[0.5, 0.55, 0.6, 1])
    if light:
        spec.worldbody.add_light(name="top", pos=[center[0], center[1], center[2] + 3 * extent], dir=[0, 0, -1],
                                 diffuse=[0.8, 0.8, 0.8])
    if camera:
        eye = center + np.array([0.0, -2.2 * extent, 0.8 * extent])
        forward = center - eye
        forward /= np.linalg.norm(forward)
        right = np.cross(forward, [0.0, 0.0, 1.0])
        right /= np.linalg.norm(right)
        up = np.cross(right, forward)
        spec.worldbody.add_camera(name=camera, pos=eye, xyaxes=np.concatenate([right, up]))


# ---------------------------------------------------------------------------------------------- inspection
def describe_model(model: mujoco.MjModel) -> dict[str, list[dict]]:
    """Bodies, joints, actuators (with control ranges), cameras and sensors of a model, as plain data."""
    def name(kind, i: int) -> str:
        return mujoco.mj_id2name(model, kind, i) or f"<unnamed {i}>"

    obj = mujoco.mjtObj
    joint_types = {0: "free", 1: "ball", 2: "slide", 3: "hinge"}
    return {
        "bodies": [{"name": name(obj.mjOBJ_BODY, i), "mass": float(model.body_mass[i]),
                    "parent": name(obj.mjOBJ_BODY, int(model.body_parentid[i]))} for i in range(model.nbody)],
        "joints": [{"name": name(obj.mjOBJ_JOINT, i), "type": joint_types[int(model.jnt_type[i])],
                    "range": model.jnt_range[i].tolist() if model.jnt_limited[i] else None,
                    "body": name(obj.mjOBJ_BODY, int(model.jnt_bodyid[i]))} for i in range(model.njnt)],
        "actuators": [{"name": name(obj.mjOBJ_ACTUATOR, i),
                       "ctrlrange": model.actuator_ctrlrange[i].tolist() if model.actuator_ctrllimited[i] else None,
                       "target": _actuator_target(model, i)} for i in range(model.nu)],
        "cameras": [{"name": name(obj.mjOBJ_CAMERA, i), "body": name(obj.mjOBJ_BODY, int(model.cam_bodyid[i]))}
                    for i in range(model.ncam)],
        "sensors": [{"name": name(obj.mjOBJ_SENSOR, i), "dim": int(model.sensor_dim[i])} for i in range(model.nsensor)],
    }


def _actuator_target(model: mujoco.MjModel, index: int) -> str:
    kinds = {int(mujoco.mjtTrn.mjTRN_JOINT): mujoco.mjtObj.mjOBJ_JOINT,
             int(mujoco.mjtTrn.mjTRN_TENDON): mujoco.mjtObj.mjOBJ_TENDON,
             int(mujoco.mjtTrn.mjTRN_SITE): mujoco.mjtObj.mjOBJ_SITE,
             int(mujoco.mjtTrn.mjTRN_BODY): mujoco.mjtObj.mjOBJ_BODY}
    kind = kinds.get(int(model.actuator_trntype[index]))
    if kind is None:
        return "-"
    return mujoco.mj_id2name(model, kind, int(model.actuator_trnid[index, 0])) or "-"
