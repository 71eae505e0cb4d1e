"""The embodia arm shared by the manipulation tasks: batched kinematics, end-effector delta control by
damped-least-squares IK, the home pose, and the tasks' common base class and default randomization."""

from __future__ import annotations

import math
from operator import itemgetter

import mujoco
import numpy as np
from pydantic import Field

from embodia.sim.batch import BatchSim
from embodia.sim.randomization import DomainRandomization
from embodia.tasks.base import Task, TaskConfig, uniform

# ---- constants of the robot (names resolved to indices once, at bind)
ARM_JOINTS = ("joint1", "joint2", "joint3", "joint4", "joint5", "joint6")
FINGER_JOINTS = ("finger_left", "finger_right")
GRIP_SITE = "grip"
GOAL_JOINTS = ("goal_x", "goal_y", "goal_z")  # the goal marker's position is part of the state
CUBE_JOINT = "cube"
FINGER_MAX_M = 0.04  # each finger slides 0..4 cm from the centre line
CUBE_HALF_M = 0.02  # the cube is 4 cm wide
TABLE_TOP_Z = 0.0
# tool pointing straight down, fingers closing along world y
TOOL_DOWN = np.diag([-1.0, 1.0, -1.0])
TOOL_DOWN_ROWS = TOOL_DOWN.ravel().tolist()  # the same, as 9 row-major floats (one-env IK)
# home pose: tool down, grip point at (0.4, 0, 0.2) m (elbow up); tests check it against FK
HOME_QPOS = np.array([0.0, 0.26016, 1.66085, 1.22058, 0.0, 0.0])
# where the IK may put the grip point (m): keeps the fingers above the table and the arm away from singularities
EE_LOW = np.array([0.2, -0.35, 0.022])
EE_HIGH = np.array([0.68, 0.35, 0.45])
_EE_BOX = tuple(zip(EE_LOW.tolist(), EE_HIGH.tolist()))  # the same, per axis as Python floats (one-env control)


class ArmTaskConfig(TaskConfig):
    """Settings shared by the arm tasks (control, IK and reset)."""

    action_scale_m: float = Field(0.03, gt=0.0, le=0.1, description="grip-point displacement per step at action 1 (m)")
    max_target_lead_m: float = Field(0.04, gt=0.0, description="how far the held grip target may run ahead of the grip point (m)")
    ik_damping: float = Field(0.03, gt=0.0, description="damping lambda of the damped-least-squares IK")
    ik_iterations: int = Field(2, ge=1, le=10, description="Gauss-Newton IK iterations per control step")
    orientation_weight: float = Field(0.3, ge=0.0, description="weight (m/rad) of the tool-down orientation error in the IK")


_EYE3 = np.eye(3)
_EYE3.setflags(write=False)


def axis_skew(axis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The cross-product matrix K of a unit `axis` (3,) and K @ K: the constant parts of Rodrigues' formula."""
    x, y, z = axis
    skew = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return skew, skew @ skew


def rotation_about_axis(axis: np.ndarray, angle: np.ndarray, skews: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Rotation matrices (N, 3, 3) about a unit `axis` (3,) by `angle` (N,) (Rodrigues); `skews` = axis_skew(axis) if precomputed."""
    skew, skew2 = axis_skew(axis) if skews is None else skews
    sin, cos = np.sin(angle)[:, None, None], np.cos(angle)[:, None, None]
    return _EYE3 + sin * skew + (1.0 - cos) * skew2


def cross3(a0: np.ndarray, a1: np.ndarray, a2: np.ndarray, b0: np.ndarray, b1: np.ndarray, b2: np.ndarray) -> np.ndarray:
    """Cross products from the vectors' components, stacked on a new last axis: np.cross's exact arithmetic
    without its axis shuffling, which cost more than the products at small batches."""
    return np.stack([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], axis=-1)


def orientation_error(rotation: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Small-angle rotation vector (N, 3) that turns `rotation` (N,3,3) towards `target` (3,3) or (N,3,3)."""
    # target[..., i, :] is row i of one (3,3) target or of each of (N,3,3): arithmetic broadcasts it, no copy
    rows = (rotation[:, 0], rotation[:, 1], rotation[:, 2], target[..., 0, :], target[..., 1, :], target[..., 2, :])
    return 0.5 * cross3(*rows).sum(axis=1)  # the columns' cross products, summed


def orientation_error_one(rotation: list[float], target: list[float]) -> tuple[float, float, float]:
    """`orientation_error` of one rotation, both given as 9 row-major floats: sum_j col_j(R) x col_j(T) / 2 in
    Python floats (the same products, differences and summation order as the batch, so the same values)."""
    r00, r01, r02, r10, r11, r12, r20, r21, r22 = rotation
    t00, t01, t02, t10, t11, t12, t20, t21, t22 = target
    ex = (r10 * t20 - r20 * t10) + (r11 * t21 - r21 * t11) + (r12 * t22 - r22 * t12)
    ey = (r20 * t00 - r00 * t20) + (r21 * t01 - r01 * t21) + (r22 * t02 - r02 * t22)
    ez = (r00 * t10 - r10 * t00) + (r01 * t11 - r11 * t01) + (r02 * t12 - r12 * t02)
    return 0.5 * ex, 0.5 * ey, 0.5 * ez


def squared_norm_one(values: list[float]) -> float:
    """|v|^2 of one env's values as Python floats (the batch's np.sum(np.square(v)) to rounding)."""
    total = 0.0
    for value in values:
        total += value * value
    return total


def distance_one(a: list[float], b: list[float]) -> float:
    """|a - b| of two points given as float lists: np.linalg.norm's sum of squares, in Python floats."""
    total = 0.0
    for x, y in zip(a, b):
        total += (x - y) * (x - y)
    return math.sqrt(total)


def _clip_by_min_max(values: np.ndarray, low: np.ndarray, high: np.ndarray, out: np.ndarray) -> np.ndarray:
    """np.clip's values (minimum of maximum) in two ufunc calls."""
    return np.minimum(np.maximum(values, low, out=out), high, out=out)


# NumPy's clip ufunc itself (np.clip is a Python wrapper around it): one call instead of two on the one-pose IK's
# path; the same minimum-of-maximum values. Its home is private (numpy._core), so fall back when it moves.
_clip = getattr(getattr(getattr(np, "_core", None), "umath", None), "clip", None)
if not isinstance(_clip, np.ufunc):
    _clip = _clip_by_min_max


def _lapack_lu_solve():
    """LAPACK's dgesv (the LU solve np.linalg.solve calls) without NumPy's wrapper: 4x cheaper on a 6x6 system."""
    from scipy.linalg.lapack import dgesv

    return dgesv


def _as_slice(indices: np.ndarray) -> slice | np.ndarray:
    """`indices` as a slice when they are consecutive (indexing by it makes views, not copies), else unchanged."""
    if len(indices) and np.array_equal(indices, np.arange(indices[0], indices[0] + len(indices))):
        return slice(int(indices[0]), int(indices[0]) + len(indices))
    return indices


def _quat_to_mat(quat: np.ndarray) -> np.ndarray:
    mat = np.zeros(9)
    mujoco.mju_quat2Mat(mat, quat)
    return mat.reshape(3, 3)


class ArmKinematics:
    """Batched forward kinematics and geometric Jacobian of the serial chain from the world to a site.

    Reads body_pos/body_quat/jnt_axis/jnt_pos of every body on the chain once; bodies on the chain may
    carry one hinge joint (an arm joint) or none (fixed links such as the hand).
    """

    def __init__(self, model: mujoco.MjModel, joint_names: tuple[str, ...], site_name: str) -> None:
        self.site_id = _name_to_id(model, mujoco.mjtObj.mjOBJ_SITE, site_name)
        self.joint_ids = np.array([_name_to_id(model, mujoco.mjtObj.mjOBJ_JOINT, n) for n in joint_names])
        self.qpos_adr = model.jnt_qposadr[self.joint_ids].copy()
        self.dof_adr = model.jnt_dofadr[self.joint_ids].copy()
        self.qpos0 = model.qpos0[self.qpos_adr].copy()
        self.lower = model.jnt_range[self.joint_ids, 0].copy()
        self.upper = model.jnt_range[self.joint_ids, 1].copy()
        self.links = self._chain(model, joint_names)
        self.site_pos = model.site_pos[self.site_id].copy()
        self.site_rot = _quat_to_mat(model.site_quat[self.site_id])
        self._site_turn = _turn(self.site_rot)
        self._model = model
        self._data: mujoco.MjData | None = None  # one pose's FK by mj_kinematics (N=1), made on first use
        self._posed: bytes | None = None  # the joint positions whose kinematics `_data` holds (one-pose methods)
        self._memo: tuple[bytes, tuple[np.ndarray, ...]] | None = None  # the last forward() input and result

    def _chain(self, model: mujoco.MjModel, joint_names: tuple[str, ...]) -> list[dict]:
        bodies = []
        body = int(model.site_bodyid[self.site_id])
        while body != 0:
            bodies.append(body)
            body = int(model.body_parentid[body])
        links, seen = [], []
        for body in reversed(bodies):
            link = {"pos": _offset(model.body_pos[body]), "rot": _turn(_quat_to_mat(model.body_quat[body])), "joint": None}
            joints = [j for j in range(model.body_jntadr[body], model.body_jntadr[body] + model.body_jntnum[body])]
            if len(joints) > 1 or any(model.jnt_type[j] != mujoco.mjtJoint.mjJNT_HINGE for j in joints):
                raise ValueError(f"body {model.body(body).name!r} on the arm chain must have at most one hinge joint")
            if joints:
                j = joints[0]
                axis = model.jnt_axis[j].copy()
                link |= {"joint": len(seen), "axis": axis, "anchor": _offset(model.jnt_pos[j]), "skews": axis_skew(axis)}
                seen.append(model.joint(j).name)
            links.append(link)
        if tuple(seen) != tuple(joint_names):
            raise ValueError(f"arm chain joints {seen} do not match the expected {list(joint_names)}; fix ARM_JOINTS or the MJCF")
        return links

    def forward(self, joint_pos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Site position (N,3), site rotation (N,3,3), joint anchors (N,n,3) and world joint axes (N,n,3).

        The result of the last call is remembered (read-only arrays): a step asks for the same pose several
        times (observation, reward, success, the next step's IK), and recomputing it dominated a step.
        """
        joint_pos = np.ascontiguousarray(joint_pos, dtype=np.float64)
        key = joint_pos.shape[0].to_bytes(8, "little") + joint_pos.tobytes()
        if self._memo is not None and self._memo[0] == key:
            return self._memo[1]
        result = self._forward_one(joint_pos) if joint_pos.shape[0] == 1 else self._forward(joint_pos)
        for array in result:
            array.setflags(write=False)
        self._memo = (key, result)
        return result

    def _forward_one(self, joint_pos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """`_forward` of one pose (1, n) by MuJoCo's own mj_kinematics: one C call instead of ~70 tiny NumPy
        operations. The same chain and the same rotations (hinge angle q - qpos0), so equal to ~1e-16."""
        if self._data is None:
            self._make_data()
        self._data.qpos[self.qpos_adr] = joint_pos[0]
        mujoco.mj_kinematics(self._model, self._data)
        self._posed = None
        return (self._site_xpos[None].copy(), self._site_xmat.reshape(1, 3, 3).copy(),
                self._xanchor[self.joint_ids][None], self._xaxis[self.joint_ids][None])

    def _make_data(self) -> None:
        self._data = mujoco.MjData(self._model)
        self._site_xpos, self._site_xmat = self._data.site_xpos[self.site_id], self._data.site_xmat[self.site_id]
        self._xanchor, self._xaxis = self._data.xanchor, self._data.xaxis
        # the one-pose IK's buffers and views, made once (each attribute read of an MjData array builds a new
        # array, and a fancy index copies): mj_jacSite's [linear; angular] rows over all dofs, the weighted arm
        # columns (6, n), J J^T + lambda^2 I, the error, the solution, the step (n,)
        n = len(self.joint_ids)
        qpos = _as_slice(self.qpos_adr)
        self._qpos_one = self._data.qpos[qpos] if isinstance(qpos, slice) else None  # None: written by index
        self._jac_one = np.zeros((6, self._model.nv))
        self._jac_rows = self._jac_one[:3], self._jac_one[3:]
        dofs = _as_slice(self.dof_adr)
        self._jac_arm = self._jac_one[:, dofs] if isinstance(dofs, slice) else None  # None: gathered per solve
        # the weighted Jacobian column-major, as the batch's (its fancy-indexed columns are): BLAS picks its kernel
        # by memory order, and the same kernel rounds the products alike
        self._ik_jac, self._ik_system = np.zeros((6, n), order="F"), np.zeros((6, 6))
        self._ik_error, self._ik_step = np.zeros(6), np.zeros(n)
        self._lu_solve = _lapack_lu_solve()
        self._ik_constants: dict[tuple[float, float, float], tuple] = {}

    # ---- one pose (N=1, the one-env path): MuJoCo's kinematics on 1-D arrays, no batch axis, no memo bytes
    def pose_one(self, joint_pos: np.ndarray) -> None:
        """Put one pose (n,) into the private MjData and run mj_kinematics, unless it holds that pose already."""
        key = joint_pos.tobytes()
        if key == self._posed:
            return
        if self._data is None:
            self._make_data()
        if self._qpos_one is not None:
            self._qpos_one[:] = joint_pos
        else:
            self._data.qpos[self.qpos_adr] = joint_pos
        mujoco.mj_kinematics(self._model, self._data)
        self._posed = key

    def site_pos_one(self, joint_pos: np.ndarray) -> np.ndarray:
        """Site position (3,) of one pose (n,): `forward(joint_pos[None])[0][0]` by mj_kinematics."""
        self.pose_one(joint_pos)
        return self._site_xpos.copy()

    def site_pos_list_one(self, joint_pos: np.ndarray) -> list[float]:
        """`site_pos_one` as 3 Python floats (the one-env tasks' arithmetic reads them without a copy)."""
        self.pose_one(joint_pos)
        return self._site_xpos.tolist()

    def solve_ik_one(self, joint_pos: np.ndarray, target_pos: list[float], target_rot: list[float], *,
                     damping: float = 0.03, iterations: int = 2, orientation_weight: float = 0.3,
                     max_step_rad: float = 0.4, out: np.ndarray | None = None) -> np.ndarray:
        """`solve_ik` of one pose (n,) towards `target_pos` (3 floats) and `target_rot` (9 row-major floats), into
        `out` (n,) if given: the same damped-least-squares steps with the same products (matmul on the batch's
        contiguous layout, so BLAS rounds alike) and the same LAPACK LU solve (dgesv, called directly), on
        preallocated arrays; the Jacobian from mj_jacSite."""
        if self._data is None:
            self._make_data()
        weight_rows, weight, damping_eye, step_low, step_high = self._ik_constants_one(damping, orientation_weight,
                                                                                       max_step_rad)
        if out is None:
            q = joint_pos.copy()
        else:
            q = out
            q[:] = joint_pos
        model, data, site_id = self._model, self._data, self.site_id
        (jacp, jacr), jac = self._jac_rows, self._ik_jac
        system, error, step = self._ik_system, self._ik_error, self._ik_step
        target_x, target_y, target_z = target_pos
        for _ in range(iterations):
            self.pose_one(q)
            mujoco.mj_comPos(model, data)
            mujoco.mj_jacSite(model, data, jacp, jacr, site_id)
            jac_arm = self._jac_arm if self._jac_arm is not None else self._jac_one[:, self.dof_adr]
            np.multiply(jac_arm, weight_rows, out=jac)  # the batch's jac * weights[:, None]
            np.dot(jac, jac.T, out=system)  # np.dot: the same BLAS call as matmul (syrk), a lighter wrapper
            np.add(system, damping_eye, out=system)  # J J^T + lambda^2 I
            site_x, site_y, site_z = self._site_xpos.tolist()
            turn_x, turn_y, turn_z = orientation_error_one(self._site_xmat.tolist(), target_rot)
            # the batch's error * weights: the position rows times 1.0 are themselves
            error[:] = (target_x - site_x, target_y - site_y, target_z - site_z,
                        turn_x * weight, turn_y * weight, turn_z * weight)
            solution, info = self._lu_solve(system, error)[2:]  # (J J^T + lambda^2 I) x = e
            if info != 0:
                raise np.linalg.LinAlgError("arm IK: singular damped least-squares system (ik_damping must be > 0)")
            np.dot(jac.T, solution, out=step)
            _clip(step, step_low, step_high, out=step)
            np.add(q, step, out=q)
            _clip(q, self.lower, self.upper, out=q)
        return q

    def _ik_constants_one(self, damping: float, orientation_weight: float,
                          max_step_rad: float) -> tuple[np.ndarray, float, np.ndarray, np.ndarray, np.ndarray]:
        """The IK's row weights as a column (6, 1), the orientation weight, lambda^2 I (6, 6) and the step bounds
        -+max_step_rad (n,) (arrays: a ufunc converts a Python scalar on every call), made once per setting."""
        key = (damping, orientation_weight, max_step_rad)
        if key not in self._ik_constants:
            weights = np.array([1.0, 1.0, 1.0, orientation_weight, orientation_weight, orientation_weight])
            bound = np.full(len(self.joint_ids), float(max_step_rad))
            self._ik_constants[key] = (weights[:, None], float(orientation_weight), damping**2 * np.eye(6), -bound, bound)
        return self._ik_constants[key]

    def _jacobian_one(self, joint_pos: np.ndarray) -> np.ndarray:
        """The site Jacobian (1, 6, n) of one pose by mj_jacSite (the same z_i x (p - p_i) and z_i to ~1e-16)."""
        data = self._data
        if not np.array_equal(data.qpos[self.qpos_adr], joint_pos[0]):
            self._forward_one(joint_pos)
        mujoco.mj_comPos(self._model, data)
        jac = np.zeros((6, self._model.nv))
        mujoco.mj_jacSite(self._model, data, jac[:3], jac[3:], self.site_id)
        return jac[None][:, :, self.dof_adr]

    def _forward(self, joint_pos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        num = joint_pos.shape[0]
        pos = np.zeros((num, 3))
        rot = np.broadcast_to(np.eye(3), (num, 3, 3)).copy()
        anchors = np.zeros((num, len(self.joint_ids), 3))
        axes = np.zeros((num, len(self.joint_ids), 3))
        # a zero offset (None) or identity rotation (None) is skipped: adding rot @ 0 or multiplying by I changes
        # no value (at most the sign of a zero), and most links of an arm have both
        for link in self.links:
            if link["pos"] is not None:
                pos = pos + rot @ link["pos"]
            if link["rot"] is not None:
                rot = rot @ link["rot"]
            k = link["joint"]
            if k is None:
                continue
            anchor = pos if link["anchor"] is None else pos + rot @ link["anchor"]
            axes[:, k] = rot @ link["axis"]
            anchors[:, k] = anchor
            rot = rot @ rotation_about_axis(link["axis"], joint_pos[:, k] - self.qpos0[k], link["skews"])
            pos = anchor if link["anchor"] is None else anchor - rot @ link["anchor"]
        site_pos = pos + rot @ self.site_pos
        return site_pos, rot if self._site_turn is None else rot @ self._site_turn, anchors, axes

    def jacobian(self, joint_pos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Site position (N,3), rotation (N,3,3) and geometric Jacobian (N, 6, n): rows are [linear; angular]."""
        site_pos, site_rot, anchors, axes = self.forward(joint_pos)
        if joint_pos.shape[0] == 1:
            return site_pos, site_rot, self._jacobian_one(joint_pos)
        lever = site_pos[:, None, :] - anchors
        components = (axes[..., 0], axes[..., 1], axes[..., 2], lever[..., 0], lever[..., 1], lever[..., 2])
        linear = cross3(*components)  # z_i x (p_ee - p_i), (N, n, 3)
        jac = np.concatenate([linear, axes], axis=2).transpose(0, 2, 1)
        return site_pos, site_rot, jac

    def solve_ik(self, joint_pos: np.ndarray, target_pos: np.ndarray, target_rot: np.ndarray, *,
                 damping: float = 0.03, iterations: int = 2, orientation_weight: float = 0.3,
                 max_step_rad: float = 0.4) -> np.ndarray:
        """Joint positions (N, n) that move the site towards `target_pos` (N,3) with rotation `target_rot`."""
        q = joint_pos.copy()
        weights = np.array([1.0, 1.0, 1.0, orientation_weight, orientation_weight, orientation_weight])
        for _ in range(iterations):
            site_pos, site_rot, jac = self.jacobian(q)
            error = np.concatenate([target_pos - site_pos, orientation_error(site_rot, target_rot)], axis=1)
            step = damped_least_squares(jac * weights[:, None], error * weights, damping)
            # np.clip's values through the ufuncs directly (np.clip's wrapper cost more than the IK arithmetic)
            q = q + np.minimum(np.maximum(step, -max_step_rad), max_step_rad)
            q = np.minimum(np.maximum(q, self.lower), self.upper)
        return q


def damped_least_squares(jac: np.ndarray, error: np.ndarray, damping: float) -> np.ndarray:
    """dq (N, n) = J^T (J J^T + lambda^2 I)^-1 e for Jacobians (N, m, n) and errors (N, m)."""
    jjt = jac @ jac.transpose(0, 2, 1) + damping**2 * np.eye(jac.shape[1])
    return (jac.transpose(0, 2, 1) @ np.linalg.solve(jjt, error[..., None]))[..., 0]


def _offset(vector: np.ndarray) -> np.ndarray | None:
    """A copy of a constant offset (3,) of the chain, or None when it is zero (nothing to add)."""
    return vector.copy() if vector.any() else None


def _turn(rotation: np.ndarray) -> np.ndarray | None:
    """A constant rotation (3,3) of the chain, or None when it is exactly the identity (nothing to multiply)."""
    return None if np.array_equal(rotation, np.eye(3)) else rotation


def _name_to_id(model: mujoco.MjModel, kind: mujoco.mjtObj, name: str) -> int:
    index = mujoco.mj_name2id(model, kind, name)
    if index < 0:
        raise ValueError(f"the arm model has no {kind.name.removeprefix('mjOBJ_').lower()} named {name!r}")
    return index


def default_randomization(task_name: str) -> DomainRandomization:
    """Mild physics randomization used by the arm tasks' experts and data generation."""
    if task_name not in ("arm-reach", "arm-push", "arm-pick-place"):
        raise ValueError(f"no default randomization for task {task_name!r}; arm tasks are arm-reach, arm-push, arm-pick-place")
    return DomainRandomization(
        body_mass_scale=(0.8, 1.2),
        friction_scale=(0.8, 1.2),
        joint_damping_scale=(0.8, 1.2),
        actuator_gain_scale=(0.9, 1.1),
        init_qpos_noise=0.005,
    )


class ArmTask(Task):
    """Common base of the arm tasks: grip-point delta control through IK, arm reset and goal marker.

    Action: [dx, dy, dz] in [-1, 1] (times `action_scale_m` per step) moves a held grip-point target;
    tasks with `uses_gripper` add a fourth entry, the gripper command (-1 closed .. +1 open).
    """

    xml = "arm.xml"
    cameras = ("front", "wrist")
    uses_gripper: bool = False

    def bind(self, sim: BatchSim) -> None:
        super().bind(sim)
        model = sim.model
        self.kinematics = ArmKinematics(model, ARM_JOINTS, GRIP_SITE)
        self.arm_qpos = self.kinematics.qpos_adr
        self.arm_dof = self.kinematics.dof_adr
        finger_ids = [_name_to_id(model, mujoco.mjtObj.mjOBJ_JOINT, n) for n in FINGER_JOINTS]
        self.finger_qpos = model.jnt_qposadr[finger_ids].copy()
        self.finger_dof = model.jnt_dofadr[finger_ids].copy()
        goal_ids = [_name_to_id(model, mujoco.mjtObj.mjOBJ_JOINT, n) for n in GOAL_JOINTS]
        self.goal_qpos = model.jnt_qposadr[goal_ids].copy()
        self.ee_target = np.zeros((sim.num_envs, 3))
        self._target_stale = np.ones(sim.num_envs, dtype=bool)  # re-read the grip point at the first step
        self._ctrl_one = np.zeros(model.nu)  # action_to_ctrl_one's output row: arm joints (6) | fingers (2)
        self._ctrl_arm_one = self._ctrl_one[: len(ARM_JOINTS)]  # the IK writes its solution here
        # the one-env methods' indices, made once: env 0's arm joint positions as a view when they are consecutive
        # (None: gathered per call), and pickers of Python floats from `qpos_one.tolist()` / `qvel_one.tolist()`
        arm = _as_slice(self.arm_qpos)
        self._arm_qpos_view = sim.qpos_one[arm] if isinstance(arm, slice) else None
        self._pick_arm_qpos, self._pick_arm_qvel = itemgetter(*self.arm_qpos.tolist()), itemgetter(*self.arm_dof.tolist())
        self._pick_fingers, self._pick_goal = itemgetter(*self.finger_qpos.tolist()), itemgetter(*self.goal_qpos.tolist())

    # ---- state readers
    def joint_pos(self, sim: BatchSim) -> np.ndarray:
        """Arm joint positions (N, 6)."""
        return sim.qpos[:, self.arm_qpos]

    def joint_vel(self, sim: BatchSim) -> np.ndarray:
        """Arm joint velocities (N, 6)."""
        return sim.qvel[:, self.arm_dof]

    def ee_pos(self, sim: BatchSim) -> np.ndarray:
        """Grip point (between the finger pads) in world coordinates (N, 3), by forward kinematics."""
        return self.kinematics.forward(self.joint_pos(sim))[0]

    def goal_pos(self, sim: BatchSim) -> np.ndarray:
        """Goal position (N, 3) in world coordinates."""
        return sim.qpos[:, self.goal_qpos]

    def gripper_opening(self, sim: BatchSim) -> np.ndarray:
        """Distance between the finger pads (N,) in metres."""
        return sim.qpos[:, self.finger_qpos].sum(axis=1)

    # ---- control
    def action_bounds(self, model: mujoco.MjModel) -> tuple[np.ndarray, np.ndarray]:
        size = 4 if self.uses_gripper else 3
        return -np.ones(size), np.ones(size)

    def action_to_ctrl(self, sim: BatchSim, action: np.ndarray) -> np.ndarray:
        """Move the held grip target by the action, solve IK for joint targets, map the gripper command."""
        cfg = self.config
        joint_pos = self.joint_pos(sim)
        ee = self.kinematics.forward(joint_pos)[0]
        self.ee_target[self._target_stale] = ee[self._target_stale]
        self._target_stale[:] = False
        target = self.ee_target + cfg.action_scale_m * action[:, :3]
        target = np.clip(target, ee - cfg.max_target_lead_m, ee + cfg.max_target_lead_m)
        self.ee_target = np.clip(target, EE_LOW, EE_HIGH)
        arm_ctrl = self.kinematics.solve_ik(joint_pos, self.ee_target, TOOL_DOWN, damping=cfg.ik_damping,
                                            iterations=cfg.ik_iterations, orientation_weight=cfg.orientation_weight)
        if self.uses_gripper:
            finger = 0.5 * (action[:, 3] + 1.0) * FINGER_MAX_M
        else:
            finger = np.full(sim.num_envs, 0.5 * FINGER_MAX_M)
        return np.concatenate([arm_ctrl, finger[:, None], finger[:, None]], axis=1)

    # ---- one env (BatchEnv.step_one): the formulas above on env 0's values, kinematics by mj_kinematics
    def joint_pos_one(self, sim: BatchSim) -> np.ndarray:
        """`joint_pos` of env 0 (6,): a view into the state when the arm's joints are consecutive."""
        view = self._arm_qpos_view
        return view if view is not None else sim.qpos_one[self.arm_qpos]

    def ee_pos_one(self, sim: BatchSim) -> np.ndarray:
        """`ee_pos` of env 0 (3,)."""
        return self.kinematics.site_pos_one(self.joint_pos_one(sim))

    def ee_list_one(self, sim: BatchSim) -> list[float]:
        """`ee_pos` of env 0 as 3 Python floats."""
        return self.kinematics.site_pos_list_one(self.joint_pos_one(sim))

    def action_to_ctrl_one(self, sim: BatchSim, action: np.ndarray) -> np.ndarray:
        """`action_to_ctrl` of env 0: the held target moved and clipped in Python floats, then `solve_ik_one`
        straight into the control row."""
        cfg = self.config
        joint_pos = self.joint_pos_one(sim)
        ee = self.kinematics.site_pos_list_one(joint_pos)
        if self._target_stale[0]:
            held = ee
            self._target_stale[0] = False
        else:
            held = self.ee_target[0].tolist()
        moves = action.tolist()
        scale, lead = cfg.action_scale_m, cfg.max_target_lead_m
        target = []
        for held_m, move, grip, (low, high) in zip(held, moves, ee, _EE_BOX):  # np.clip twice: within `lead`
            value = min(max(held_m + scale * move, grip - lead), grip + lead)  # of the grip point, then in the box
            target.append(min(max(value, low), high))
        self.ee_target[0] = target
        self.kinematics.solve_ik_one(joint_pos, target, TOOL_DOWN_ROWS, damping=cfg.ik_damping,
                                     iterations=cfg.ik_iterations, orientation_weight=cfg.orientation_weight,
                                     out=self._ctrl_arm_one)
        ctrl = self._ctrl_one
        ctrl[6:] = 0.5 * (moves[3] + 1.0) * FINGER_MAX_M if self.uses_gripper else 0.5 * FINGER_MAX_M
        return ctrl

    # ---- reset helpers
    def reset_arm(self, sim: BatchSim, env_ids: np.ndarray, rngs: list[np.random.Generator], finger_m: float) -> None:
        """Arm at home plus uniform noise of `reset_noise_scale` rad; fingers at `finger_m` each."""
        noise = self.config.reset_noise_scale
        qpos = sim.qpos[env_ids]
        qpos[:, self.arm_qpos] = HOME_QPOS + uniform(rngs, -noise, noise, len(HOME_QPOS))
        qpos[:, self.finger_qpos] = finger_m
        sim.set_qpos(env_ids, qpos)
        self._target_stale[env_ids] = True

    def set_goal(self, sim: BatchSim, env_ids: np.ndarray, goal: np.ndarray) -> None:
        """Place the goals (k, 3) of `env_ids`; the goal marker holds them in the state."""
        qpos = sim.qpos[env_ids]
        qpos[:, self.goal_qpos] = goal
        sim.set_qpos(env_ids, qpos)


class CubeTaskConfig(ArmTaskConfig):
    """Settings shared by the tasks with a cube on the table."""

    cube_low: tuple[float, float] = Field((0.35, -0.15), description="lower (x, y) corner of the cube's start box (m)")
    cube_high: tuple[float, float] = Field((0.55, 0.15), description="upper (x, y) corner of the cube's start box (m)")
    cube_yaw_range: float = Field(0.4, ge=0.0, le=np.pi, description="cube yaw drawn uniformly in +- this (rad)")
    success_radius_m: float = Field(0.03, gt=0.0, description="cube centre within this distance of the goal counts as success")
    fall_height_m: float = Field(-0.05, description="the episode ends (cube_fell) when the cube centre drops below this z")


class CubeTask(ArmTask):
    """Base of the cube tasks (push, pick-place): a 4 cm cube, a goal and the gripper; action = [dx, dy, dz, grip].

    obs (38) = arm joint pos (6) | arm joint vel (6) | grip point (3) | gripper opening (1) | cube pos (3) |
    cube quat wxyz (4) | cube linear vel (3) | cube angular vel (3) | goal (3) | cube - grip (3) | goal - cube (3).
    """

    xml = "arm_cube.xml"
    uses_gripper = True

    def bind(self, sim: BatchSim) -> None:
        super().bind(sim)
        cube = _name_to_id(sim.model, mujoco.mjtObj.mjOBJ_JOINT, CUBE_JOINT)
        self.cube_qpos = int(sim.model.jnt_qposadr[cube])
        self.cube_dof = int(sim.model.jnt_dofadr[cube])

    # ---- state readers
    def cube_pos(self, sim: BatchSim) -> np.ndarray:
        """Cube centre (N, 3) in world coordinates."""
        return sim.qpos[:, self.cube_qpos : self.cube_qpos + 3]

    def cube_quat(self, sim: BatchSim) -> np.ndarray:
        """Cube orientation (N, 4) as a unit quaternion (w, x, y, z)."""
        return sim.qpos[:, self.cube_qpos + 3 : self.cube_qpos + 7]

    def cube_vel(self, sim: BatchSim) -> np.ndarray:
        """Cube linear (world) and angular (body) velocity (N, 6)."""
        return sim.qvel[:, self.cube_dof : self.cube_dof + 6]

    def holding(self, sim: BatchSim) -> np.ndarray:
        """(N,) bool: the cube sits between the finger pads and the fingers are closed on it."""
        near = np.linalg.norm(self.cube_pos(sim) - self.ee_pos(sim), axis=1) < 0.02
        opening = self.gripper_opening(sim)
        return near & (opening > 1.5 * CUBE_HALF_M) & (opening < 2.5 * CUBE_HALF_M)

    def observe(self, sim: BatchSim) -> np.ndarray:
        ee, cube, goal = self.ee_pos(sim), self.cube_pos(sim), self.goal_pos(sim)
        parts = [self.joint_pos(sim), self.joint_vel(sim), ee, self.gripper_opening(sim)[:, None], cube,
                 self.cube_quat(sim), self.cube_vel(sim), goal, cube - ee, goal - cube]
        return np.concatenate(parts, axis=1)  # (N, 38)

    # ---- one env (BatchEnv.step_one): the formulas above on env 0's values, in Python floats
    def observe_one(self, sim: BatchSim) -> np.ndarray:
        qpos, qvel, c, v = sim.qpos_one.tolist(), sim.qvel_one.tolist(), self.cube_qpos, self.cube_dof
        ee_x, ee_y, ee_z = self.ee_list_one(sim)
        cube_x, cube_y, cube_z = qpos[c : c + 3]
        goal_x, goal_y, goal_z = self._pick_goal(qpos)
        left, right = self._pick_fingers(qpos)
        # np.array of a list: cheaper than of a tuple
        return np.array([*self._pick_arm_qpos(qpos), *self._pick_arm_qvel(qvel), ee_x, ee_y, ee_z, left + right,
                         cube_x, cube_y, cube_z, *qpos[c + 3 : c + 7], *qvel[v : v + 6], goal_x, goal_y, goal_z,
                         cube_x - ee_x, cube_y - ee_y, cube_z - ee_z,
                         goal_x - cube_x, goal_y - cube_y, goal_z - cube_z])  # (38,)

    def holding_one(self, sim: BatchSim) -> bool:
        """`holding` of env 0."""
        qpos = sim.qpos_one.tolist()
        return self._holding(distance_one(qpos[self.cube_qpos : self.cube_qpos + 3], self.ee_list_one(sim)), qpos)

    def _holding(self, cube_to_grip: float, qpos: list[float]) -> bool:
        """`holding`'s test of env 0 from its cube-to-grip-point distance and its qpos (Python floats)."""
        left, right = self._pick_fingers(qpos)
        opening = left + right
        return cube_to_grip < 0.02 and 1.5 * CUBE_HALF_M < opening < 2.5 * CUBE_HALF_M

    def cube_to_goal_one(self, sim: BatchSim) -> float:
        """`cube_to_goal` of env 0."""
        qpos = sim.qpos_one.tolist()
        return distance_one(self._pick_goal(qpos), qpos[self.cube_qpos : self.cube_qpos + 3])

    def success_one(self, sim: BatchSim) -> bool:
        return self.cube_to_goal_one(sim) < self.config.success_radius_m

    def terminated_one(self, sim: BatchSim) -> bool:
        return sim.qpos_one.item(self.cube_qpos + 2) < self.config.fall_height_m

    # ---- reset
    def reset_cube(self, sim: BatchSim, env_ids: np.ndarray, rngs: list[np.random.Generator]) -> np.ndarray:
        """Place the cube flat on the table at a random (x, y, yaw); returns its positions (k, 3)."""
        cfg = self.config
        xy = uniform(rngs, cfg.cube_low, cfg.cube_high, 2)
        yaw = uniform(rngs, -cfg.cube_yaw_range, cfg.cube_yaw_range, 1)[:, 0]
        pos = np.concatenate([xy, np.full((len(env_ids), 1), TABLE_TOP_Z + CUBE_HALF_M)], axis=1)
        quat = np.stack([np.cos(yaw / 2), np.zeros_like(yaw), np.zeros_like(yaw), np.sin(yaw / 2)], axis=1)
        qpos = sim.qpos[env_ids]
        qpos[:, self.cube_qpos : self.cube_qpos + 7] = np.concatenate([pos, quat], axis=1)
        sim.set_qpos(env_ids, qpos)
        return pos

    # ---- outcome
    def cube_to_goal(self, sim: BatchSim) -> np.ndarray:
        """Cube centre to goal distance (N,) in metres."""
        return np.linalg.norm(self.goal_pos(sim) - self.cube_pos(sim), axis=1)

    def success(self, sim: BatchSim) -> np.ndarray:
        return self.cube_to_goal(sim) < self.config.success_radius_m

    def terminated(self, sim: BatchSim) -> np.ndarray:
        return self.cube_pos(sim)[:, 2] < self.config.fall_height_m

    def failure_modes(self, sim: BatchSim) -> dict[str, np.ndarray]:
        return {"cube_fell": self.terminated(sim)}
