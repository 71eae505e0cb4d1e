"""One batched-env interface for the RL trainers: embodia's BatchEnv directly, or any Gymnasium vector env.

Both give whole-batch NumPy arrays, the terminal observation of every finished episode (to bootstrap
truncations), episode statistics, and a way to put the batch back where a checkpoint left it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import gymnasium as gym
import numpy as np

from embodia.core.errors import UserError
from embodia.sim.batch import physics_threads
from embodia.tasks.env import BatchEnv
from embodia.tasks.gym_fast import fast_step_for, time_limit

GYM_PREFIX = "gym:"


class EpisodeStats:
    """Running return/length/success per env; finished episodes are collected until popped."""

    def __init__(self, num_envs: int) -> None:
        self.episode_return = np.zeros(num_envs)
        self.episode_length = np.zeros(num_envs, dtype=np.int64)
        self.episode_success = np.zeros(num_envs, dtype=bool)
        self.has_success = False  # the env reports success at all (Gymnasium's MuJoCo envs and locomotion do not)
        self._finished: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def record(self, reward: np.ndarray, success: np.ndarray | None, done: np.ndarray) -> None:
        """Add one step's rewards; close the episodes in `done`."""
        self.episode_return += reward
        self.episode_length += 1
        if success is not None:
            self.has_success = True
            self.episode_success |= success
        if done.any():
            self._finished.append((self.episode_return[done].copy(), self.episode_length[done].copy(),
                                   self.episode_success[done].copy()))
            self.episode_return[done] = 0.0
            self.episode_length[done] = 0
            self.episode_success[done] = False

    def pop(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(returns, lengths, successes) of episodes finished since the last pop; successes is None when the env
        has no notion of success (so no success rate of 0 is reported for it)."""
        if not self._finished:
            return np.zeros(0), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool) if self.has_success else None
        parts = list(zip(*self._finished))
        self._finished = []
        returns, lengths, successes = (np.concatenate(p) for p in parts)
        return returns, lengths, successes if self.has_success else None

    def reset(self) -> None:
        self.__init__(len(self.episode_return))

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"stats_return": self.episode_return.copy(), "stats_length": self.episode_length.copy(),
                "stats_success": self.episode_success.copy()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.episode_return = state["stats_return"].copy()
        self.episode_length = state["stats_length"].copy()
        self.episode_success = state["stats_success"].copy()
        self._finished = []


class TrainEnv(ABC):
    """What PPO and SAC see: `reset`, `step` in the env's action units, terminal observations, stats."""

    num_envs: int
    obs_dim: int
    act_dim: int
    action_low: np.ndarray
    action_high: np.ndarray
    task_name: str
    stats: EpisodeStats

    @abstractmethod
    def reset(self, seed: int) -> np.ndarray:
        """Start every env; returns observations (num_envs, obs_dim)."""

    @abstractmethod
    def step(self, action: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(obs, reward, terminated, truncated, final_obs): `final_obs` is the terminal obs where done, else obs."""

    def state_dict(self) -> dict[str, np.ndarray] | None:
        """The batch's full state for an exact resume, or None when the env cannot save it."""
        return None

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore what `state_dict` saved; envs whose `state_dict` is None resync instead."""
        raise ValueError(f"{type(self).__name__} cannot restore a saved batch state; resume resyncs it at the "
                         "checkpoint boundary instead")

    def resync(self, seed: int) -> np.ndarray | None:
        """For envs without state_dict: reset deterministically at a checkpoint boundary (both in the run and on resume)."""
        return None

    def close(self) -> None:
        pass

    def _describe(self, num_envs: int, obs_dim: int, action_space: gym.spaces.Box, task_name: str) -> None:
        """Set what every TrainEnv is described by: sizes, float64 action bounds, name, fresh episode stats."""
        self.num_envs = num_envs
        self.obs_dim = obs_dim
        self.act_dim = int(np.prod(action_space.shape))
        self.action_low = action_space.low.astype(np.float64)
        self.action_high = action_space.high.astype(np.float64)
        self.task_name = task_name
        self.stats = EpisodeStats(num_envs)


class BatchTrainEnv(TrainEnv):
    """embodia's BatchEnv with same-step autoreset; its state (sim, counters, RNGs, task arrays) is checkpointable."""

    def __init__(self, task: str, num_envs: int, seed: int, **env_kwargs: Any) -> None:
        self.env = BatchEnv(task, num_envs=num_envs, seed=seed, autoreset_mode="same_step", **env_kwargs)
        self._describe(num_envs, self.env.obs_dim, self.env.single_action_space, task)

    def reset(self, seed: int) -> np.ndarray:
        obs, _ = self.env.reset(seed=seed)
        self.stats.reset()
        return obs

    def step(self, action: np.ndarray):
        obs, reward, terminated, truncated, info = self.env.step(action)
        done = terminated | truncated
        final_obs = obs
        if "_final_obs" in info:
            final_obs = np.where(info["_final_obs"][:, None], info["final_obs"], obs)
        self.stats.record(reward, info.get("success") if self.env.task.has_success else None, done)
        return obs, reward, terminated, truncated, final_obs

    def state_dict(self) -> dict[str, np.ndarray]:
        state = {f"env_{k}": v for k, v in self.env.state_dict().items()}
        state.update(self.stats.state_dict())
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.env.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("env_")})
        self.stats.load_state_dict(state)

    def observe(self) -> np.ndarray:
        """Current observations without stepping (after a state restore)."""
        return self.env.observe()

    def close(self) -> None:
        self.env.close()


def _bounded_box(space: gym.Space) -> gym.spaces.Box:
    """The action space, checked: PPO and SAC here act in a bounded continuous Box."""
    if not isinstance(space, gym.spaces.Box) or not np.isfinite(space.low).all() or not np.isfinite(space.high).all():
        raise UserError(f"action space {space} is not a bounded Box; PPO and SAC here need continuous bounded actions")
    return space


def _reported_success(info: dict[str, Any]) -> Any:
    """The success a Gymnasium env reports in `info` (`success` or SB3's `is_success`), or None."""
    return info.get("success", info.get("is_success"))


class GymTrainEnv(TrainEnv):
    """Any Gymnasium VectorEnv with a Box action space and same-step autoreset (e.g. `make_vec(..., "sync")`)."""

    def __init__(self, env: gym.vector.VectorEnv, name: str | None = None) -> None:
        mode = env.metadata.get("autoreset_mode", gym.vector.AutoresetMode.NEXT_STEP)
        if mode != gym.vector.AutoresetMode.SAME_STEP:
            raise UserError(
               f"Gymnasium vector env uses autoreset_mode={mode}; embodia's trainers need SAME_STEP: create it with "
               "gymnasium.make_vec(id, num_envs, vector_kwargs={'autoreset_mode': gymnasium.vector.AutoresetMode.SAME_STEP})"
           )
        self.env = env
        self._describe(env.num_envs, int(np.prod(env.single_observation_space.shape)),
                       _bounded_box(env.single_action_space),
                       name or (env.spec.id if env.spec is not None else type(env).__name__))

    def reset(self, seed: int) -> np.ndarray:
        obs, _ = self.env.reset(seed=seed)
        self.stats.reset()
        return np.array(obs, dtype=np.float64).reshape(self.num_envs, -1)  # a copy: Gymnasium reuses its buffer

    def step(self, action: np.ndarray):
        # clip to the action space as embodia's BatchEnv (and SB3) do: Gymnasium's MuJoCo envs clamp the control
        # but charge their control cost on the raw action, which would punish a Gaussian policy's tails
        action = np.clip(action, self.action_low, self.action_high)
        obs, reward, terminated, truncated, info = self.env.step(action.astype(self.env.single_action_space.dtype))
        obs = np.array(obs, dtype=np.float64).reshape(self.num_envs, -1)  # a copy: Gymnasium reuses its buffer
        terminated, truncated = np.asarray(terminated, dtype=bool), np.asarray(truncated, dtype=bool)
        reward = np.asarray(reward, dtype=np.float64)
        final_obs = obs
        if "_final_obs" in info and info["_final_obs"].any():
            final_obs = obs.copy()
            for env_id in np.flatnonzero(info["_final_obs"]):  # Gymnasium gives an object array here
                final_obs[env_id] = np.asarray(info["final_obs"][env_id], dtype=np.float64).reshape(-1)
        success = _reported_success(info)
        success = None if success is None else np.asarray(success, dtype=bool)
        self.stats.record(reward, success, terminated | truncated)
        return obs, reward, terminated, truncated, final_obs

    def resync(self, seed: int) -> np.ndarray:
        return self.reset(seed)

    def close(self) -> None:
        self.env.close()


class GymSyncTrainEnv(TrainEnv):
    """`gym:<id>`: `num_envs` envs from `gymnasium.make`, stepped in a plain loop with same-step autoreset.

    The same envs, seeds and numbers as `make_vec(id, n, "sync", SAME_STEP)` + GymTrainEnv, without the
    SyncVectorEnv layer (per-env info merging, batch-space iteration, observation deep copies): a quarter of the
    env-step cost at 4 envs on small MuJoCo tasks. Env i is seeded `seed + i` on reset, as make_vec does.
    """

    def __init__(self, gym_id: str, num_envs: int, env_kwargs: dict[str, Any], name: str,
                 nthread: int | None = None) -> None:
        if num_envs < 1:
            raise UserError(f"num_envs={num_envs} for {name}; it needs at least 1 env")
        nthread = physics_threads(nthread, num_envs, name)  # checked before any env is made
        self.envs = [gym.make(gym_id, **env_kwargs) for _ in range(num_envs)]
        space = _bounded_box(self.envs[0].action_space)
        self._describe(num_envs, int(np.prod(self.envs[0].observation_space.shape)), space, name)
        self._action_dtype = space.dtype
        # Gymnasium's MuJoCo locomotion envs step as one batch, bit for bit their own step (tasks/gym_fast.py), their
        # physics on as many threads as BatchEnv's would use
        self.fast_step = fast_step_for(self.envs, nthread)
        self._elapsed = np.zeros(num_envs, dtype=np.int64)  # the TimeLimit count while stepping around it
        self._max_steps = time_limit(self.envs[0])

    def reset(self, seed: int) -> np.ndarray:
        obs = np.empty((self.num_envs, self.obs_dim))
        for i, env in enumerate(self.envs):
            obs[i] = np.ravel(env.reset(seed=seed + i)[0])
        self._elapsed[:] = 0
        self.stats.reset()
        return obs

    def step(self, action: np.ndarray):
        # clipped as GymTrainEnv does (see there), then cast to the space's dtype: the env charges its control
        # cost in that dtype, so float32 here keeps the rewards bit-equal to the SyncVectorEnv path
        action = np.minimum(np.maximum(action, self.action_low), self.action_high).astype(self._action_dtype)  # np.clip
        if self.fast_step is not None:
            return self._step_batched(action)
        n = self.num_envs
        obs = np.empty((n, self.obs_dim))  # fresh each step: SAC keeps the previous obs while storing this one
        reward = np.empty(n)
        terminated = np.empty(n, dtype=bool)
        truncated = np.empty(n, dtype=bool)
        finals: dict[int, np.ndarray] = {}
        successes: dict[int, bool] = {}
        for i, env in enumerate(self.envs):
            env_obs, reward[i], terminated[i], truncated[i], info = env.step(action[i])
            success = _reported_success(info)
            if success is not None:
                successes[i] = bool(success)
            if terminated[i] or truncated[i]:
                finals[i] = env_obs
                env_obs = env.reset()[0]
            obs[i] = np.ravel(env_obs)
        final_obs = obs
        if finals:
            final_obs = obs.copy()
            for i, env_obs in finals.items():
                final_obs[i] = np.ravel(env_obs)
        self.stats.record(reward, self._success_array(successes), terminated | truncated)
        return obs, reward, terminated, truncated, final_obs

    def _step_batched(self, action: np.ndarray):
        """`step` through the batched stepper: Gymnasium's numbers, its resets, and its time limit counted here."""
        obs, reward, terminated = self.fast_step.step(action)
        self._elapsed += 1
        truncated = self._elapsed >= (self._max_steps or np.iinfo(np.int64).max)
        done = terminated | truncated
        final_obs = obs
        if done.any():
            final_obs = obs.copy()
            for i in np.flatnonzero(done):
                obs[i] = np.ravel(self.envs[i].reset()[0])
                self._elapsed[i] = 0
        self.stats.record(reward, None, done)
        return obs, reward, terminated, truncated, final_obs

    def _success_array(self, successes: dict[int, bool]) -> np.ndarray | None:
        """Per-env success of this step (False where an env did not say), or None when no env reports success."""
        if not successes:
            return None
        out = np.zeros(self.num_envs, dtype=bool)
        out[list(successes)] = list(successes.values())
        return out

    def resync(self, seed: int) -> np.ndarray:
        return self.reset(seed)

    def close(self) -> None:
        if self.fast_step is not None:
            self.fast_step.close()
        for env in self.envs:
            env.close()


def make_train_env(source: str | gym.vector.VectorEnv, num_envs: int, seed: int,
                   env_kwargs: dict | None = None) -> TrainEnv:
    """An embodia task name, `gym:<Gymnasium id>` (GymSyncTrainEnv), or a ready Gymnasium VectorEnv."""
    env_kwargs = dict(env_kwargs or {})
    if isinstance(source, gym.vector.VectorEnv):
        return GymTrainEnv(source)
    if source.startswith(GYM_PREFIX):
        gym_id = source[len(GYM_PREFIX):]
        if env_kwargs.pop("backend", "cpu") != "cpu":
            raise UserError(f"{source} runs on Gymnasium's own MuJoCo; physics backends apply to embodia tasks only")
        nthread = env_kwargs.pop("nthread", None)  # embodia's option, as for its own tasks; the rest are the env's
        try:
            return GymSyncTrainEnv(gym_id, num_envs, env_kwargs, name=source, nthread=nthread)
        except gym.error.Error as error:
            raise UserError(f"cannot make Gymnasium env {gym_id!r}: {error}") from error
        except TypeError as error:
            if "unexpected keyword argument" not in str(error):
                raise
            raise UserError(f"env_kwargs {sorted(env_kwargs)} are not arguments of Gymnasium env {gym_id!r} "
                            f"({str(error).split(' was raised')[0]}); embodia's own env options (randomization, "
                            "backend, ...) apply to embodia tasks only — pass that env's own keyword arguments") from None
    return BatchTrainEnv(source, num_envs, seed, **env_kwargs)
