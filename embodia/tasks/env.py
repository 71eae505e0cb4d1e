"""A task on a batch simulator, with Gymnasium's words: reset/step, terminated vs truncated, autoreset."""

from __future__ import annotations

from typing import Any, Literal

import gymnasium as gym
import numpy as np

from embodia.core.errors import UserError
from embodia.sim.batch import BatchSim, episode_rngs, finite_floats, require_finite, rng_from_array, rng_to_array
from embodia.sim.counter_rng import hashed_normal
from embodia.sim.randomization import DomainRandomization
from embodia.tasks.base import Task

AutoresetMode = Literal["same_step", "next_step", "disabled"]
STREAM_OBS_NOISE, STREAM_ACTION_NOISE = 201, 202  # counter-rng streams of the randomization's noise


class BatchEnv:
    """`num_envs` episodes of one task stepped together; observations and rewards are whole-batch arrays.

    Autoreset modes follow Gymnasium: `same_step` resets finished envs inside the step and puts the
    terminal observation in `info["final_obs"]`; `next_step` returns the terminal observation and resets
    on the following step; `disabled` leaves resets to the caller (`reset(options={"reset_mask": ...})`).
    """

    def __init__(
        self,
        task: Task | str,
        num_envs: int = 1,
        *,
        seed: int = 0,
        randomization: DomainRandomization | dict | None = None,
        autoreset_mode: AutoresetMode = "same_step",
        max_episode_steps: int | None = None,
        nthread: int | None = None,
        perturbations: bool = False,
        task_config: dict | None = None,
        backend: str = "cpu",
        backend_options: dict | None = None,
    ) -> None:
        from embodia.tasks.registry import make_task

        self.task = make_task(task, task_config) if isinstance(task, str) else task
        randomization = DomainRandomization.from_data(randomization)
        if autoreset_mode not in ("same_step", "next_step", "disabled"):
            raise UserError(f"autoreset_mode={autoreset_mode!r}; use 'same_step', 'next_step' or 'disabled'")
        self.autoreset_mode = autoreset_mode
        self.model = self.task.build_model()
        self._renderers: dict[tuple, Any] = {}  # (width, height, multisample) -> BatchRenderer, made on first use
        self.sim = BatchSim(
            self.model,
            num_envs,
            frame_skip=self.task.config.frame_skip,
            randomization=randomization,
            nthread=nthread,
            seed=seed,
            perturbations=perturbations,
            backend=backend,
            backend_options=backend_options,
        )
        self.task.bind(self.sim)
        self.num_envs = num_envs
        self.max_episode_steps = max_episode_steps or self.task.config.max_episode_steps
        self._seed_rng = np.random.default_rng(seed)
        self.episode_seed = np.zeros(num_envs, dtype=np.int64)
        self.episode_step = np.zeros(num_envs, dtype=np.int64)
        self.episode_return = np.zeros(num_envs)
        self._needs_reset = np.zeros(num_envs, dtype=bool)
        self._define_spaces()

    # ------------------------------------------------------------------ spaces
    def _define_spaces(self) -> None:
        low, high = self.task.action_bounds(self.model)
        self.single_action_space = gym.spaces.Box(low.astype(np.float32), high.astype(np.float32), dtype=np.float32)
        obs = self.task.observe(self.sim)
        self.obs_dim = obs.shape[1]
        self.single_observation_space = gym.spaces.Box(-np.inf, np.inf, (self.obs_dim,), dtype=np.float64)
        self._action_low, self._action_high = self.single_action_space.low, self.single_action_space.high
        # step_one's buffers: the state before the step, float64 bounds (no mixed-type clip)
        self._before_one = np.zeros(self.sim.nstate)
        self._low_one, self._high_one = self._action_low.astype(np.float64), self._action_high.astype(np.float64)
        # an action between the largest lower and the smallest upper bound needs no clipping (with Python floats)
        self._inside_low = float(self._low_one.max(initial=-np.inf))
        self._inside_high = float(self._high_one.min(initial=np.inf))
        self._state_one = self.sim.state[0]
        self._info_keys: dict[str, str] = {}  # reward term -> "reward/<term>", built once per term
        # the task keeps the default identity control and the action bounds are the control range: step_one's
        # clipped action goes to the physics as it is
        task_type = type(self.task)
        self._ctrl_is_action = (task_type.action_to_ctrl is Task.action_to_ctrl
                                and task_type.action_to_ctrl_one is Task.action_to_ctrl_one
                                and np.array_equal(self._low_one, self.sim.ctrl_low)
                                and np.array_equal(self._high_one, self.sim.ctrl_high))
        # where step_one clips the action to: the simulator's control row itself when the action is the control
        # and goes straight to mj_step (one copy less per step), else a buffer of its own
        direct = self._ctrl_is_action and self.sim.direct_one
        self._plain_weigh = task_type.weigh is Task.weigh  # step_one weighs the terms itself, in its info loop
        self._action_one = self.sim.ctrl_one if direct else np.zeros(self._action_low.shape)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, self.num_envs)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, self.num_envs)

    @property
    def action_dim(self) -> int:
        return self.single_action_space.shape[0]

    # ------------------------------------------------------------------ reset
    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        """Reset all envs (or those in `options["reset_mask"]`); `options["episode_seeds"]` replays episodes."""
        options = options or {}
        if seed is not None:
            self._seed_rng = np.random.default_rng(seed)
            self.sim.rng = np.random.default_rng([seed, 2])
        mask = options.get("reset_mask")
        env_ids = np.arange(self.num_envs) if mask is None else np.flatnonzero(np.asarray(mask, dtype=bool))
        self.reset_envs(env_ids, options.get("episode_seeds"))
        return self._observe(), {"episode_seed": self.episode_seed.copy()}

    def reset_envs(self, env_ids: np.ndarray, episode_seeds: np.ndarray | None = None) -> None:
        """Start new episodes in `env_ids` only; every other env is untouched."""
        env_ids = np.asarray(env_ids, dtype=np.int64)
        if env_ids.size == 0:
            return
        if episode_seeds is None:
            episode_seeds = self._seed_rng.integers(0, 2**62, size=env_ids.size)
        episode_seeds = np.asarray(episode_seeds, dtype=np.int64)
        if episode_seeds.shape != env_ids.shape:
            raise ValueError(f"episode_seeds has shape {episode_seeds.shape}, expected {env_ids.shape} (one per env reset)")
        rngs = episode_rngs(episode_seeds)
        self.sim.reset(env_ids, rngs)
        self.task.reset(self.sim, env_ids, rngs)
        self.sim.add_initial_noise(env_ids, rngs)
        self.sim.forward(env_ids)
        self.episode_seed[env_ids] = episode_seeds
        self.episode_step[env_ids] = 0
        self.episode_return[env_ids] = 0.0
        self._needs_reset[env_ids] = False

    # ------------------------------------------------------------------ step
    def check_action(self, action: np.ndarray) -> np.ndarray:
        """Validate an action batch; clip it to the action space. Raises ValueError naming the envs."""
        action = np.asarray(action, dtype=np.float64)
        if action.shape != self.action_space.shape:
            if self.num_envs == 1 and action.shape == self._action_low.shape:
                action = action[None]
            else:
                raise UserError(f"action has shape {action.shape}, expected {self.action_space.shape} "
                                "(num_envs, action_dim)")
        require_finite(action, "action")
        return np.minimum(np.maximum(action, self._action_low), self._action_high)  # np.clip's values, less overhead

    def step(self, action: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Advance every env one control step: (obs, reward, terminated, truncated, info), all batched."""
        action = self.check_action(action)
        pending = self._needs_reset.copy() if self.autoreset_mode == "next_step" else None
        before, diverged, reward, terms, success, terminated = self._advance(action)
        self.episode_step += 1
        truncated = self.episode_step >= self.max_episode_steps
        if diverged.any():
            reward = np.where(diverged, 0.0, reward)
            terminated = terminated & ~diverged
            truncated = truncated | diverged
        self.episode_return += reward
        obs = self._observe()
        if diverged.any():  # the state is garbage: report the last good observation instead
            obs[diverged] = self._observe_state(before)[diverged]
        info: dict[str, Any] = {"success": success, "diverged": diverged, "episode_seed": self.episode_seed.copy()}
        info.update({f"reward/{name}": value for name, value in terms.items()})
        done = terminated | truncated
        info["episode_return"] = self.episode_return.copy()
        info["episode_length"] = self.episode_step.copy()
        if pending is not None and pending.any():
            obs, reward, terminated, truncated = self._finish_pending_resets(pending, obs, reward, terminated, truncated)
            done = done & ~pending
        if done.any():
            obs = self._autoreset(done, obs, info)
        return obs, reward, terminated, truncated, info

    def step_one(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """`step` of a one-env batch without autoreset, as one env's values: (obs (obs_dim,), reward, terminated,
        truncated, info). The single-env fast path behind Gymnasium's API: the task's one-env methods
        (`Task.observe_one` ...: the batch formulas on one env's values) and `BatchSim.step_one` (`mj_step`),
        preallocated buffers, scalar bookkeeping; tests hold it to `step`'s values (1e-12)."""
        if self.num_envs != 1 or self.autoreset_mode != "disabled":
            raise UserError(f"step_one needs num_envs=1 and autoreset_mode='disabled' (this batch: num_envs="
                            f"{self.num_envs}, autoreset_mode={self.autoreset_mode!r}); use step()")
        action = self._check_action_one(action)
        sim, task = self.sim, self.task
        before = self._before_one
        before[:] = self._state_one
        unit_noise = None
        if sim.randomization.action_noise_std > 0:
            unit_noise = hashed_normal(self.episode_seed, self.episode_step, STREAM_ACTION_NOISE, self.model.nu)
        if self._ctrl_is_action:  # the clipped action is the control: nothing to map or check again
            diverged = sim.step_one(action, unit_noise, checked=True)
        else:
            diverged = sim.step_one(task.action_to_ctrl_one(sim, action), unit_noise)
        success, terminated = task.success_one(sim), task.terminated_one(sim)
        info: dict[str, Any] = {"success": success, "diverged": diverged, "episode_seed": self.episode_seed.item(0)}
        reward = self._weigh_one(task.reward_terms_one(sim, action, before), info)
        # the counters as Python numbers: one read and one write of each array
        length = self.episode_step.item(0) + 1
        self.episode_step[0] = length
        truncated = length >= self.max_episode_steps
        if diverged:  # the state is garbage: no reward, truncated, the last good observation
            reward, terminated, truncated = 0.0, False, True  # as `step`: the reward terms in info stay as computed
            obs = self._observe_state(before[None])[0]
        else:
            obs = task.observe_one(sim)
        std = sim.randomization.obs_noise_std
        if std > 0:  # as `_observe`: drawn from (episode seed, step)
            obs = obs + std * hashed_normal(self.episode_seed, self.episode_step, STREAM_OBS_NOISE, obs.shape[0])[0]
        episode_return = self.episode_return.item(0) + reward
        self.episode_return[0] = episode_return
        info["episode_return"] = episode_return
        info["episode_length"] = length
        return obs, reward, terminated, truncated, info

    def _weigh_one(self, terms: dict[str, float], info: dict[str, Any]) -> float:
        """`Task.weigh` of one env's reward terms: returns the reward and puts each weighted term into `info` as
        "reward/<term>", in the same loop (a task that overrides `weigh` gets its own method called)."""
        keys = self._info_keys
        if not self._plain_weigh:
            reward, terms = self.task.weigh(terms)
            for name, value in terms.items():
                info[keys.get(name) or keys.setdefault(name, f"reward/{name}")] = value
            return reward
        scales, reward = self.task.config.reward_scales, 0
        for name, value in terms.items():  # Task.weigh's arithmetic: a scale of 1 leaves a term as it is
            scale = scales.get(name, 1.0)
            if scale != 1.0:
                value = scale * value
            info[keys.get(name) or keys.setdefault(name, f"reward/{name}")] = value
            reward = reward + value
        return reward

    def _check_action_one(self, action: np.ndarray) -> np.ndarray:
        """`check_action` of one env's action (action_dim,) (or (1, action_dim), a list ...), clipped into the
        reused buffer `_action_one`."""
        out = self._action_one
        if getattr(action, "shape", None) != out.shape:
            action = np.asarray(action, dtype=np.float64)
            if action.shape != out.shape and action.shape != self.action_space.shape:
                raise UserError(f"action has shape {action.shape}, expected {out.shape} (action_dim,)")
            action = action.reshape(out.shape)
        values = finite_floats(action, "action")  # checked before clipping, which would turn inf into a bound
        if values and min(values) >= self._inside_low and max(values) <= self._inside_high:  # (min's default= costs)
            out[:] = action  # inside the box (the usual case): the clip would change nothing
            return out
        # float32 or float64: the cast into the float64 buffer and the clip in the same two ufunc calls
        return np.minimum(np.maximum(action, self._low_one, out=out), self._high_one, out=out)

    def _advance(self, action: np.ndarray) -> tuple[np.ndarray, ...]:
        """Physics, reward and outcome of one control step: (state before, diverged, reward, terms, success,
        terminated), each over the batch. Shared by `step` and `step_one`."""
        before = self.sim.state.copy()
        unit_noise = None
        if self.sim.randomization.action_noise_std > 0:
            unit_noise = hashed_normal(self.episode_seed, self.episode_step, STREAM_ACTION_NOISE, self.model.nu)
        if self._ctrl_is_action:  # the action, checked and clipped to the control range, is the control
            physics = self.sim.step(action, unit_noise, checked=True)
        else:
            physics = self.sim.step(self.task.action_to_ctrl(self.sim, action), unit_noise)
        reward, terms = self.task.reward(self.sim, action, before)
        return before, physics.diverged, reward, terms, self.task.success(self.sim), self.task.terminated(self.sim)

    def _finish_pending_resets(self, pending, obs, reward, terminated, truncated):
        # next_step mode: the envs that ended last step are reset now; this step's action is ignored for them
        ids = np.flatnonzero(pending)
        self.reset_envs(ids)
        obs = self._observe()
        reward = np.where(pending, 0.0, reward)
        return obs, reward, terminated & ~pending, truncated & ~pending

    def _autoreset(self, done: np.ndarray, obs: np.ndarray, info: dict) -> np.ndarray:
        info["_final_obs"] = done
        info["final_obs"] = obs.copy()
        if self.autoreset_mode == "same_step":
            self.reset_envs(np.flatnonzero(done))
            return self._observe()
        self._needs_reset |= done
        return obs

    # ------------------------------------------------------------------ observation
    def _observe(self) -> np.ndarray:
        obs = self.task.observe(self.sim)
        std = self.sim.randomization.obs_noise_std
        if std > 0:  # drawn from (episode seed, step): an episode's noise replays from its seed alone
            obs = obs + std * hashed_normal(self.episode_seed, self.episode_step, STREAM_OBS_NOISE, obs.shape[1])
        return obs

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self) -> dict[str, np.ndarray]:
        """The batch's full state (sim, episode counters, seed generator, task arrays) for an exact resume."""
        state = {f"sim_{k}": v for k, v in self.sim.state_dict().items()}
        state.update({"episode_seed": self.episode_seed.copy(), "episode_step": self.episode_step.copy(),
                      "episode_return": self.episode_return.copy(), "needs_reset": self._needs_reset.copy(),
                      "seed_rng": rng_to_array(self._seed_rng)})
        for name, value in vars(self.task).items():  # per-env task arrays such as goals and expert targets
            if isinstance(value, np.ndarray):
                state[f"task_{name}"] = value.copy()
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore what `state_dict` saved into this (same-shaped) batch."""
        self.sim.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("sim_")})
        self.episode_seed = state["episode_seed"].copy()
        self.episode_step = state["episode_step"].copy()
        self.episode_return = state["episode_return"].copy()
        self._needs_reset = state["needs_reset"].copy()
        self._seed_rng = rng_from_array(state["seed_rng"])
        for key, value in state.items():
            if not key.startswith("task_"):
                continue
            current = getattr(self.task, key[5:], None)
            if isinstance(current, np.ndarray) and current.shape == value.shape:
                current[...] = value  # in place: the task may hold views into the simulator's arrays
            else:
                setattr(self.task, key[5:], value.copy())
        self.sim.reapply_randomization(episode_rngs(self.episode_seed))

    def observe(self) -> np.ndarray:
        """Current observations without stepping (after a restore)."""
        return self._observe()

    def _observe_state(self, state: np.ndarray) -> np.ndarray:
        current = self.sim.state.copy()
        self.sim.state[:] = state
        obs = self.task.observe(self.sim)
        self.sim.state[:] = current
        return obs

    # ------------------------------------------------------------------ rendering
    def render(self, env_ids=None, camera: str | int = -1, width: int = 128, height: int = 128, depth: bool = False,
               multisample: int | None = None) -> np.ndarray:
        """RGB uint8 (k, height, width, 3) (or float32 depth) of `env_ids` from a named camera; `multisample`
        sets the anti-aliasing samples (None: the model's; 0: off, cheapest)."""
        from embodia.sim.render import BatchRenderer

        key = (width, height, multisample)  # one renderer each: a camera policy and a video render in turn
        if key not in self._renderers:
            self._renderers[key] = BatchRenderer(self.sim, width=width, height=height, multisample=multisample)
        ids = np.arange(self.num_envs) if env_ids is None else np.atleast_1d(env_ids)
        return self._renderers[key].render(ids, camera=camera, depth=depth)

    def close(self) -> None:
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()
        self.sim.close()
