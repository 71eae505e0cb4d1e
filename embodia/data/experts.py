"""Scripted experts for the arm tasks: batched, stateful phase machines that read the true task state.

`make_expert(task_name, env)` returns an object with `act(obs) -> actions (N, act_dim)` and
`reset(env_ids)`; an env whose episode just started (step counter 0) is reset automatically.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Protocol

import numpy as np

from embodia.core.errors import UserError
from embodia.tasks.arm_common import CUBE_HALF_M, TABLE_TOP_Z

PUSH_HEIGHT_M = TABLE_TOP_Z + 0.025  # grip point height while pushing: pads span 0.5-4.5 cm above the table
SAFE_HEIGHT_M = TABLE_TOP_Z + 0.09  # travel height above the cube
PAD_HALF_M = 0.012  # half width of the closed finger pads along the push direction
GRIP_OPEN, GRIP_CLOSED = 1.0, -1.0


class Expert(Protocol):
    """A batched scripted policy: `act(obs)` (N, obs_dim) -> (N, act_dim) and `reset(env_ids)`."""

    obs_dim: int
    act_dim: int

    def act(self, obs: np.ndarray) -> np.ndarray: ...

    def reset(self, env_ids: np.ndarray | None = None) -> None: ...


class PhaseExpert(ABC):
    """Shared machinery: per-env phase and timer arrays, auto-reset on new episodes, P-control to a target."""

    def __init__(self, env, gain: float = 1.0) -> None:
        self.env = env
        self.task = env.task
        self.sim = env.sim
        self.num_envs = env.num_envs
        self.obs_dim = env.obs_dim
        self.act_dim = env.action_dim
        self.gain = gain
        self.phase = np.zeros(self.num_envs, dtype=np.int64)
        self.timer = np.zeros(self.num_envs, dtype=np.int64)  # steps spent in the current phase

    def reset(self, env_ids: np.ndarray | None = None) -> None:
        """Start the phase machine over in `env_ids` (all envs when None)."""
        ids = slice(None) if env_ids is None else np.asarray(env_ids, dtype=np.int64)
        self.phase[ids] = 0
        self.timer[ids] = 0

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Actions (N, act_dim) for the current state of every env."""
        obs = np.asarray(obs)
        if obs.shape != (self.num_envs, self.obs_dim):
            raise ValueError(f"expert got observations of shape {obs.shape}, expected {(self.num_envs, self.obs_dim)}")
        self.reset(np.flatnonzero(self.env.episode_step == 0))
        phase_before = self.phase.copy()
        action = self.plan()
        self.timer = np.where(self.phase == phase_before, self.timer + 1, 0)
        return action

    @abstractmethod
    def plan(self) -> np.ndarray:
        """Update the phases and return the action batch (N, act_dim)."""

    def move_towards(self, target: np.ndarray) -> np.ndarray:
        """[dx, dy, dz] actions (N, 3) that drive the grip point to `target` (N, 3), saturated at +-1."""
        error = target - self.task.ee_pos(self.sim)
        return np.clip(self.gain * error / self.task.config.action_scale_m, -1.0, 1.0)


class ReachExpert(PhaseExpert):
    """Drive the grip point straight to the goal."""

    def plan(self) -> np.ndarray:
        return self.move_towards(self.task.goal_pos(self.sim))


class PushExpert(PhaseExpert):
    """Lift, go behind the cube on the goal's far side, lower the closed gripper, push; hold when there.

    Phases: 0 travel above the push point, 1 descend behind the cube, 2 push along the cube-to-goal line,
    3 hold still at the goal. Drifting off the line sends an env back to 0.
    """

    TRAVEL, DESCEND, PUSH, HOLD = 0, 1, 2, 3
    PUSH_STEP_M = 0.015  # how far past the contact point the pads aim each step
    PUSH_SPEED = 0.5  # action limit while pushing: a slow push keeps the cube sliding, not tumbling

    def plan(self) -> np.ndarray:
        ee = self.task.ee_pos(self.sim)
        cube = self.task.cube_pos(self.sim)
        to_goal = self.task.goal_pos(self.sim)[:, :2] - cube[:, :2]
        distance = np.linalg.norm(to_goal, axis=1)
        direction = to_goal / np.maximum(distance, 1e-6)[:, None]
        offset = ee[:, :2] - cube[:, :2]
        along = np.sum(offset * direction, axis=1)
        lateral = np.abs(offset[:, 0] * direction[:, 1] - offset[:, 1] * direction[:, 0])
        behind = cube[:, :2] - direction * (CUBE_HALF_M + PAD_HALF_M + 0.015)
        self._advance(ee, behind, along, lateral, distance)
        push_xy = cube[:, :2] + direction * (np.minimum(distance, self.PUSH_STEP_M) - CUBE_HALF_M - PAD_HALF_M)[:, None]
        low = ee[:, 2] < SAFE_HEIGHT_M - 0.02
        far_from_behind = np.linalg.norm(ee[:, :2] - behind, axis=1) > 0.015
        travel_xy = np.where((low & far_from_behind)[:, None], ee[:, :2], behind)  # rise before travelling
        target = np.select(
            [self.phase[:, None] == self.TRAVEL, self.phase[:, None] == self.DESCEND, self.phase[:, None] == self.PUSH],
            [_with_z(travel_xy, SAFE_HEIGHT_M), _with_z(behind, PUSH_HEIGHT_M), _with_z(push_xy, PUSH_HEIGHT_M)],
            default=ee,
        )
        move = self.move_towards(target)
        move = np.where((self.phase == self.PUSH)[:, None], np.clip(move, -self.PUSH_SPEED, self.PUSH_SPEED), move)
        move = np.where((self.phase == self.HOLD)[:, None], 0.0, move)
        return np.concatenate([move, np.full((self.num_envs, 1), GRIP_CLOSED)], axis=1)

    def _advance(self, ee, behind, along, lateral, distance) -> None:
        at_behind = np.linalg.norm(ee[:, :2] - behind, axis=1) < 0.012
        phase = self.phase
        phase = np.where((phase == self.TRAVEL) & at_behind & (ee[:, 2] < SAFE_HEIGHT_M + 0.02), self.DESCEND, phase)
        phase = np.where((phase == self.DESCEND) & (ee[:, 2] < PUSH_HEIGHT_M + 0.01), self.PUSH, phase)
        off_line = (lateral > 0.02) | (along > -CUBE_HALF_M)
        phase = np.where(((phase == self.DESCEND) | (phase == self.PUSH)) & off_line & (distance > 0.02), self.TRAVEL, phase)
        phase = np.where((phase == self.PUSH) & (distance < 0.012), self.HOLD, phase)
        phase = np.where((phase == self.HOLD) & (distance > 0.03), self.TRAVEL, phase)
        self.phase = phase


class PickPlaceExpert(PhaseExpert):
    """Open above the cube, descend, close, carry (lifting clear of the table) to the goal and hold it there.

    Phases: 0 above the cube, 1 descend, 2 close, 3 carry, 4 hold at the goal. Losing the cube sends an env
    back to 0.
    """

    ABOVE, DESCEND, CLOSE, CARRY, HOLD = 0, 1, 2, 3, 4
    CLOSE_STEPS = 4
    CARRY_HEIGHT_M = TABLE_TOP_Z + 0.1

    def plan(self) -> np.ndarray:
        ee = self.task.ee_pos(self.sim)
        cube = self.task.cube_pos(self.sim)
        goal = self.task.goal_pos(self.sim)
        self._advance(ee, cube, goal)
        grasp_point = cube + np.array([0.0, 0.0, 0.004])
        above = grasp_point + np.array([0.0, 0.0, 0.08])
        near_goal_xy = np.linalg.norm(goal[:, :2] - cube[:, :2], axis=1) < 0.02
        carry_z = np.where(near_goal_xy, goal[:, 2], np.maximum(goal[:, 2], self.CARRY_HEIGHT_M))
        carry_goal = np.concatenate([goal[:, :2], carry_z[:, None]], axis=1)
        rising = (cube[:, 2] < carry_z - 0.02) & ~near_goal_xy
        carry_goal = np.where(rising[:, None], np.concatenate([cube[:, :2], carry_z[:, None]], axis=1), carry_goal)
        carry_target = ee + (carry_goal - cube)  # the held cube moves with the grip point
        phase = self.phase[:, None]
        target = np.select(
            [phase == self.ABOVE, phase == self.DESCEND, phase == self.CLOSE],
            [above, grasp_point, grasp_point],
            default=carry_target,
        )
        grip = np.where(self.phase >= self.CLOSE, GRIP_CLOSED, GRIP_OPEN)
        return np.concatenate([self.move_towards(target), grip[:, None]], axis=1)

    def _advance(self, ee, cube, goal) -> None:
        xy_error = np.linalg.norm(ee[:, :2] - cube[:, :2], axis=1)
        grip_error = np.linalg.norm(ee - cube - np.array([0.0, 0.0, 0.004]), axis=1)
        holding = np.linalg.norm(ee - cube, axis=1) < 0.025
        phase = self.phase
        phase = np.where((phase == self.ABOVE) & (xy_error < 0.01), self.DESCEND, phase)
        phase = np.where((phase == self.DESCEND) & (xy_error > 0.02), self.ABOVE, phase)
        phase = np.where((phase == self.DESCEND) & (grip_error < 0.008), self.CLOSE, phase)
        phase = np.where((phase == self.CLOSE) & (self.timer >= self.CLOSE_STEPS), self.CARRY, phase)
        at_goal = np.linalg.norm(goal - cube, axis=1) < 0.01
        phase = np.where((phase == self.CARRY) & at_goal, self.HOLD, phase)
        phase = np.where((phase >= self.CARRY) & ~holding, self.ABOVE, phase)
        self.phase = phase


def _with_z(xy: np.ndarray, z: float) -> np.ndarray:
    return np.concatenate([xy, np.full((len(xy), 1), z)], axis=1)


EXPERTS = {"arm-reach": ReachExpert, "arm-push": PushExpert, "arm-pick-place": PickPlaceExpert}


def make_expert(task_name: str, env) -> PhaseExpert:
    """The scripted expert of `task_name`, bound to the batch env it will act in."""
    if task_name not in EXPERTS:
        raise UserError(f"no scripted expert for task {task_name!r}; experts exist for {sorted(EXPERTS)}")
    registered = getattr(env.task, "registry_name", None) or env.task.name
    if registered != task_name and env.task.name != task_name:
        raise UserError(f"expert for {task_name!r} cannot drive an env of task {registered!r}; pass the env's own task name")
    return EXPERTS[task_name](env)
