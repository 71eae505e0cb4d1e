"""Gymnasium's MuJoCo locomotion and balance envs stepped without Gymnasium's Python per env, with the same numbers.

A Gymnasium env step is one `mj_step(nstep=frame_skip)` plus 50-80 us of Python (wrappers, properties, small
NumPy calls on one env). `FastGymStep` makes the same MuJoCo calls on the envs' own MjModel and MjData, in one
short loop of C calls per env, then computes observation, reward and termination for the whole batch in NumPy
with Gymnasium's expressions and the env's own settings, so every number equals the env's own step to the bit
(tests/tasks/test_gym_fast.py). Resets stay Gymnasium's (its reset distribution and seeding).

With `nthread` > 1 the envs step in that many contiguous chunks at once: MuJoCo's Python calls release the GIL,
so the physics of one chunk runs while another's Python runs. Each env is stepped by one thread on its own
MjData, so the numbers are the same whatever the thread count. Threads pay off where the physics is heavy (Ant-v5,
4 envs on 2 cores: a 10,240-step PPO run took 1.16-1.40x less wall time in two paired runs, for 2-23 % more CPU;
Hopper and IDP: within the noise), so the first TRIAL_STEPS steps run serially, timed, and threads are kept
only when each would get at least MIN_THREAD_SECONDS of physics a step. (Timing serial against threaded steps
instead chose wrongly on this shared VM: its load comes in bursts longer than such a trial.)
"""

from __future__ import annotations

import os
import statistics
import weakref
from abc import ABC, abstractmethod
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from time import perf_counter

import mujoco
import numpy as np
from gymnasium.envs.mujoco.ant_v5 import AntEnv
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv
from gymnasium.envs.mujoco.hopper_v5 import HopperEnv
from gymnasium.envs.mujoco.inverted_double_pendulum_v5 import InvertedDoublePendulumEnv
from gymnasium.envs.mujoco.walker2d_v5 import Walker2dEnv
from gymnasium.wrappers import OrderEnforcing, PassiveEnvChecker, TimeLimit

TRIAL_STEPS = 16  # serial steps timed before choosing
MIN_THREAD_SECONDS = 400e-6  # physics a thread must get per step to be worth its handoff and the extra CPU
_PLAIN_WRAPPERS = (TimeLimit, OrderEnforcing, PassiveEnvChecker)  # what `gym.make` adds; none changes a number
# Gymnasium's control cost is `weight * np.sum(np.square(action))` on one env: a float32 scalar from a float32
# action under NumPy 2's promotion rules, as the batched expression gives; NumPy 1 promoted the scalar to float64
_NUMPY_2 = np.lib.NumpyVersion(np.__version__) >= "2.0.0"


class FastGymStep(ABC):
    """Steps Gymnasium envs of one class as one batch: `step(action) -> (obs, reward, terminated)`.

    Subclasses name the env class and turn the gathered MjData (root position before and after, qpos, qvel) into
    Gymnasium's observation, reward and termination for all envs at once (`_finish`).
    """

    env_class: type

    def __init__(self, envs: list, nthread: int = 1, adaptive: bool = True) -> None:
        self.env = envs[0].unwrapped  # every env was made alike (`supports`): its settings are everyone's
        self.datas = [env.unwrapped.data for env in envs]
        self.model, self.frame_skip, self.dt = self.env.model, int(self.env.frame_skip), float(self.env.dt)
        n, nq, nv = len(envs), self.model.nq, self.model.nv
        self.state = np.empty((n, nq + nv))  # each env's qpos then qvel after its step: one finiteness check
        self.qpos, self.qvel = self.state[:, :nq], self.state[:, nq:]
        self.x_before, self.x_after = np.empty(n), np.empty(n)
        # MjData's arrays as views made once: every attribute read builds a new NumPy array (~0.3 us each, a
        # dozen per env step); the views stay valid, as resets write into the same buffers
        self._ctrl, self._qpos, self._qvel = ([getattr(data, name) for data in self.datas]
                                              for name in ("ctrl", "qpos", "qvel"))
        self._all = range(n)
        self._chunks = env_chunks(n, nthread)
        self._pool = self._new_pool() if len(self._chunks) > 1 else None  # the caller steps the first chunk itself
        if self._pool is not None:
            _THREADED.add(self)
        # seconds of each serial step of the trial (`adaptive`), until threads are kept or dropped
        self._trial: list[float] | None = [] if self._pool and adaptive else None

    @classmethod
    def supports(cls, envs: list) -> bool:
        """True when every env is exactly this class (a subclass may step differently), renders nothing, is
        wrapped only by what `gym.make` adds, and all were made with the same arguments."""
        first = envs[0].unwrapped
        return _NUMPY_2 and all(
            type(env.unwrapped) is cls.env_class and env.unwrapped.render_mode is None and _plain_wrappers(env)
            and _made_alike(env.unwrapped, first) for env in envs)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One env step of every env with `action` (num_envs, nu), in the dtype Gymnasium's env would get."""
        if self._pool is None:
            self._step_envs(self._all, action)
        elif self._trial is None:
            self._step_threaded(action)
        else:
            self._step_timed(action)
        return self._finish(action)

    @property
    def threaded(self) -> bool:
        """True while the envs may step on several threads (the trial's steps run serially)."""
        return self._pool is not None

    def _step_threaded(self, action: np.ndarray) -> None:
        pending = [self._pool.submit(self._step_envs, chunk, action) for chunk in self._chunks[1:]]
        self._step_envs(self._chunks[0], action)
        for future in pending:
            future.result()  # re-raises a worker's error here

    def _step_timed(self, action: np.ndarray) -> None:
        """A serial trial step, timed; after TRIAL_STEPS, keep the threads only if each would get enough physics."""
        start = perf_counter()
        self._step_envs(self._all, action)
        self._trial.append(perf_counter() - start)
        if len(self._trial) == TRIAL_STEPS:
            per_env = statistics.median(self._trial) / len(self._all)  # np.median would import numpy.ma: ~20 ms
            self._trial = None
            if per_env * max(len(chunk) for chunk in self._chunks) < MIN_THREAD_SECONDS:
                self.close()  # serial from here on

    def _step_envs(self, envs: range, action: np.ndarray) -> None:
        """The MuJoCo calls of Gymnasium's step for envs `envs`, gathering what `_finish` batches."""
        model, frame_skip = self.model, self.frame_skip
        mj_step, post_constraint = mujoco.mj_step, mujoco.mj_rnePostConstraint
        datas, qpos, qvel, ctrl = self.datas, self._qpos, self._qvel, self._ctrl
        for i in envs:
            self._before(i)
            ctrl[i][:] = action[i]
            mj_step(model, datas[i], nstep=frame_skip)
            post_constraint(model, datas[i])  # as Gymnasium's step does (cfrc_ext, cacc)
            self._after(i)
            self.qpos[i] = qpos[i]
            self.qvel[i] = qvel[i]

    def _new_pool(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(len(self._chunks) - 1, thread_name_prefix="embodia-gym-step")

    def _renew_pool_after_fork(self) -> None:
        """A forked child has none of its parent's threads, and the parent's pool would queue work for them forever."""
        if self._pool is not None:
            self._pool = self._new_pool()

    def close(self) -> None:
        """Stop the stepping threads (none without `nthread` > 1)."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def _before(self, i: int) -> None:
        self.x_before[i] = self._qpos[i][0]

    def _after(self, i: int) -> None:
        self.x_after[i] = self._qpos[i][0]

    @abstractmethod
    def _finish(self, action: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(obs, reward, terminated) of the batch from what `step` gathered."""

    def _forward_reward(self) -> np.ndarray:
        return self.env._forward_reward_weight * ((self.x_after - self.x_before) / self.dt)

    def _control_cost(self, action: np.ndarray) -> np.ndarray:
        return self.env._ctrl_cost_weight * np.sum(np.square(action), axis=1)


class HalfCheetahStep(FastGymStep):
    """HalfCheetah-v5: forward velocity minus control cost, never terminates."""

    env_class = HalfCheetahEnv

    def _finish(self, action):
        reward = self._forward_reward() - self._control_cost(action)
        skip = 1 if self.env._exclude_current_positions_from_observation else 0
        obs = np.concatenate((self.qpos[:, skip:], self.qvel), axis=1)
        return obs, reward, np.zeros(len(obs), dtype=bool)


class PlanarWalkerStep(FastGymStep):
    """Hopper-v5 and Walker2d-v5: forward velocity + healthy reward - control cost; unhealthy ends the episode;
    observed velocities clipped to +-10."""

    def _healthy(self) -> np.ndarray:
        env, z, angle = self.env, self.qpos[:, 1], self.qpos[:, 2]
        return ((env._healthy_z_range[0] < z) & (z < env._healthy_z_range[1])
                & (env._healthy_angle_range[0] < angle) & (angle < env._healthy_angle_range[1]))

    def _finish(self, action):
        env, healthy = self.env, self._healthy()
        rewards = self._forward_reward() + healthy * env._healthy_reward
        reward = rewards - self._control_cost(action)
        skip = 1 if env._exclude_current_positions_from_observation else 0
        obs = np.concatenate((self.qpos[:, skip:], np.clip(self.qvel, -10, 10)), axis=1)
        return obs, reward, ~healthy & bool(env._terminate_when_unhealthy)


class HopperStep(PlanarWalkerStep):
    """Hopper-v5: Walker2d's health check plus every state entry after x and z within its range."""

    env_class = HopperEnv

    def _healthy(self) -> np.ndarray:
        state = self.state[:, 2:]
        low, high = self.env._healthy_state_range
        return super()._healthy() & np.all((low < state) & (state < high), axis=1)


class Walker2dStep(PlanarWalkerStep):
    env_class = Walker2dEnv


class AntStep(FastGymStep):
    """Ant-v5: planar velocity of the main body, healthy reward, control and contact costs; contact forces
    (clipped `cfrc_ext` of every body but the world) in the observation."""

    env_class = AntEnv

    def __init__(self, envs: list, nthread: int = 1, adaptive: bool = True) -> None:
        super().__init__(envs, nthread, adaptive)
        body = self.env.data.body(self.env._main_body).id
        self._body_x = [data.xpos[body, :1] for data in self.datas]  # the main body's x, as a view
        self._cfrc_ext = [data.cfrc_ext for data in self.datas]
        n = len(envs)
        self.cfrc_ext = np.empty((n, self.model.nbody, 6))
        self._squares = np.empty((n, self.model.nbody * 6))

    def _before(self, i: int) -> None:
        self.x_before[i] = self._body_x[i][0]

    def _after(self, i: int) -> None:
        self.x_after[i] = self._body_x[i][0]
        self.cfrc_ext[i] = self._cfrc_ext[i]

    def _finish(self, action):
        env, z, n = self.env, self.qpos[:, 2], len(action)
        healthy = np.isfinite(self.state).all(axis=1)
        healthy &= env._healthy_z_range[0] <= z
        healthy &= z <= env._healthy_z_range[1]
        low, high = env._contact_force_range
        contact_forces = self.cfrc_ext  # clipped in place (np.clip's values): the next step gathers it anew
        np.minimum(np.maximum(contact_forces, low, out=contact_forces), high, out=contact_forces)
        flat = contact_forces.reshape(n, -1)
        squares = np.multiply(flat, flat, out=self._squares)
        contact_cost = env._contact_cost_weight * np.add.reduce(squares, axis=1)
        rewards = self._forward_reward() + healthy * env._healthy_reward
        reward = rewards - (self._control_cost(action) + contact_cost)
        skip = 2 if env._exclude_current_positions_from_observation else 0
        parts = [self.qpos[:, skip:], self.qvel]
        if env._include_cfrc_ext_in_observation:
            parts.append(contact_forces[:, 1:].reshape(n, -1))
        return np.concatenate(parts, axis=1), reward, ~healthy & bool(env._terminate_when_unhealthy)


class InvertedDoublePendulumStep(FastGymStep):
    """InvertedDoublePendulum-v5: alive bonus minus distance and velocity penalties of the pole's tip; the episode
    ends when the tip drops to height 1."""

    env_class = InvertedDoublePendulumEnv

    def __init__(self, envs: list, nthread: int = 1, adaptive: bool = True) -> None:
        super().__init__(envs, nthread, adaptive)
        self.tip = np.empty((len(envs), 3))
        self.constraint_force = np.empty(len(envs))

    def _before(self, i: int) -> None:
        pass

    def _after(self, i: int) -> None:
        data = self.datas[i]
        self.tip[i] = data.site_xpos[0]
        self.constraint_force[i] = data.qfrc_constraint[0]

    def _finish(self, action):
        x, y = self.tip[:, 0], self.tip[:, 2]
        terminated = y <= 1
        v1, v2 = self.qvel[:, 1], self.qvel[:, 2]
        dist_penalty = 0.01 * x**2 + (y - 2) ** 2
        vel_penalty = 1e-3 * v1**2 + 5e-3 * v2**2
        reward = self.env._healthy_reward * (~terminated) - dist_penalty - vel_penalty
        obs = np.concatenate((self.qpos[:, :1], np.sin(self.qpos[:, 1:]), np.cos(self.qpos[:, 1:]),
                              np.clip(self.qvel, -10, 10), np.clip(self.constraint_force, -10, 10)[:, None]), axis=1)
        return obs, reward, terminated


STEPPERS = (AntStep, HalfCheetahStep, HopperStep, Walker2dStep, InvertedDoublePendulumStep)


_THREADED: weakref.WeakSet = weakref.WeakSet()  # steppers holding a thread pool, renewed in a forked child


def _renew_pools_after_fork() -> None:
    for stepper in list(_THREADED):
        stepper._renew_pool_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_renew_pools_after_fork)


def fast_step_for(envs: list, nthread: int = 1, adaptive: bool = True) -> FastGymStep | None:
    """The batched stepper for these Gymnasium envs (`nthread` stepping threads, kept only where they pay off
    when `adaptive`), or None when they need Gymnasium's own step."""
    return next((stepper(envs, nthread, adaptive) for stepper in STEPPERS if stepper.supports(envs)), None)


def env_chunks(num_envs: int, nthread: int) -> list[range]:
    """`num_envs` split into at most `nthread` contiguous chunks of near-equal size, one per stepping thread."""
    count = max(1, min(nthread, num_envs))
    bounds = [num_envs * k // count for k in range(count + 1)]
    return [range(start, stop) for start, stop in pairwise(bounds)]


def time_limit(env) -> int | None:
    """The episode length at which `gym.make`'s TimeLimit wrapper truncates this env, or None without one."""
    return next((int(wrapper._max_episode_steps) for wrapper in _wrappers(env) if isinstance(wrapper, TimeLimit)), None)


def _plain_wrappers(env) -> bool:
    return all(type(wrapper) in _PLAIN_WRAPPERS for wrapper in _wrappers(env))


def _wrappers(env) -> Iterator:
    """The wrappers around the bare env, outermost first."""
    while env is not env.unwrapped:
        yield env
        env = env.env


def _made_alike(env, first) -> bool:
    """Same constructor arguments (MujocoEnv records them for pickling), so one env's settings are every env's."""
    return (env._ezpickle_args == first._ezpickle_args and env._ezpickle_kwargs == first._ezpickle_kwargs
            and env.frame_skip == first.frame_skip)
