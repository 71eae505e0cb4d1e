"""Pieces shared by the imitation learners (BC, vision BC, diffusion): demonstrations in memory, normalizers,
action-chunk queues, the training loop, checkpoint parts in the one checkpoint format, and seeded rollouts."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from pydantic import BaseModel
from torch import nn

from embodia.core.errors import CheckpointError, DatasetFormatError
from embodia.core.manifest import hash_file
from embodia.core.reporter import Reporter, check_cancelled, reporter_or_null
from embodia.data.experts import make_expert
from embodia.data.reader import Dataset
from embodia.learn.checkpoint import CONFIG_FILE, load_checkpoint, policy_section, save_checkpoint
from embodia.learn.hooks import TrainingDiverged
from embodia.tasks import BatchEnv
from embodia.tasks.rollout import rollout_episodes


@contextlib.contextmanager
def torch_threads(num_threads: int) -> Iterator[None]:
    """Run torch on `num_threads` intra-op threads, then restore. Small MLPs are fastest on one thread, and
    many times slower with spinning worker threads when other processes share the cores."""
    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, num_threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# ---------------------------------------------------------------------------------------------- demonstrations
@dataclass
class Demonstrations:
    """Expert frames held as arrays: what a learner trains on, whatever the storage underneath."""

    observations: np.ndarray  # (num_frames, obs_dim) float32
    actions: np.ndarray  # (num_frames, act_dim) float32
    episode_index: np.ndarray  # (num_frames,) int64, frames of one episode contiguous and in time order
    task: str | None = None
    action_low: np.ndarray | None = None  # (act_dim,) bounds of the action space, when known
    action_high: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.observations = np.asarray(self.observations, dtype=np.float32)
        self.actions = np.asarray(self.actions, dtype=np.float32)
        self.episode_index = np.asarray(self.episode_index, dtype=np.int64)
        frames = len(self.observations)
        if self.observations.ndim != 2 or self.actions.ndim != 2:
            raise DatasetFormatError(
                f"observations {self.observations.shape} and actions {self.actions.shape} must both be 2-D (frames, dim)")
        if len(self.actions) != frames or len(self.episode_index) != frames:
            raise DatasetFormatError(f"observations ({frames}), actions ({len(self.actions)}) and episode_index "
                                     f"({len(self.episode_index)}) must have one row per frame")
        if frames == 0:
            raise DatasetFormatError("the demonstrations hold no frames; record some episodes first")
        if not (np.isfinite(self.observations).all() and np.isfinite(self.actions).all()):
            raise DatasetFormatError("the demonstrations contain NaN or inf in observations or actions")

    @property
    def obs_dim(self) -> int:
        return self.observations.shape[1]

    @property
    def act_dim(self) -> int:
        return self.actions.shape[1]

    @property
    def num_episodes(self) -> int:
        return len(np.unique(self.episode_index))

    def episode_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(start, end) frame of each frame's episode, each (num_frames,); end is exclusive."""
        change = np.flatnonzero(np.diff(self.episode_index) != 0) + 1
        starts = np.concatenate([[0], change])
        ends = np.concatenate([change, [len(self.episode_index)]])
        lengths = ends - starts
        return np.repeat(starts, lengths), np.repeat(ends, lengths)

    def action_chunks(self, horizon: int) -> np.ndarray:
        """(num_frames, horizon, act_dim): the next `horizon` actions from each frame, the episode's last
        action repeated past its end (the expert holds still once done)."""
        _, ends = self.episode_bounds()
        offsets = np.arange(horizon)
        index = np.minimum(np.arange(len(self.actions))[:, None] + offsets[None, :], ends[:, None] - 1)
        return self.actions[index]


def load_demonstrations(root: str | Path) -> Demonstrations:
    """Read an embodia/LeRobot dataset directory into arrays (`observation.state`, `action`, `episode_index`)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetFormatError(f"dataset {root} does not exist or is not a directory; generate one with "
                                 "`embodia data generate`")
    dataset = Dataset(root)
    try:
        missing = [key for key in _COLUMNS if key not in dataset.data_keys]
        if missing:
            raise DatasetFormatError(f"{root} has no column {missing[0]!r}; imitation learning needs {list(_COLUMNS)}")
        columns = {key: dataset.column(key) for key in _COLUMNS}
        return _demonstrations_from_columns(columns, dataset.info)
    finally:
        dataset.close()


_COLUMNS = ("observation.state", "action", "episode_index", "frame_index")


def _demonstrations_from_columns(columns: dict[str, np.ndarray], info: dict) -> Demonstrations:
    episode_index = columns["episode_index"].reshape(-1)
    order = np.lexsort((columns["frame_index"].reshape(-1), episode_index))  # episodes contiguous, in time order
    extra = info.get("embodia") if isinstance(info.get("embodia"), dict) else {}
    low, high = extra.get("action_low"), extra.get("action_high")
    return Demonstrations(
        observations=columns["observation.state"][order],
        actions=columns["action"][order],
        episode_index=episode_index[order],
        task=extra.get("task") or (extra.get("generate") or {}).get("task"),
        action_low=None if low is None else np.asarray(low, dtype=np.float32),
        action_high=None if high is None else np.asarray(high, dtype=np.float32),
    )


def collect_demonstrations(task: str, num_episodes: int, *, seed: int = 0, num_envs: int = 32,
                           only_successful: bool = True, task_config: dict | None = None,
                           expert: Callable | None = None, randomization: Any = None) -> Demonstrations:
    """Roll out an expert for `num_episodes` seeded episodes, in batches, into arrays.

    `expert` builds the controller from the env (`expert(env)` -> object with batched `act`, or a callable
    obs -> actions); by default the task's scripted expert from `embodia.data.experts.make_expert`.
    """
    num_envs = max(1, min(num_envs, num_episodes))
    env = BatchEnv(task, num_envs, seed=seed, autoreset_mode="disabled", task_config=task_config,
                   randomization=randomization)
    controller = make_expert(task, env) if expert is None else expert(env)
    observations, actions, episode_index, kept = [], [], [], 0
    for first in range(0, num_episodes, num_envs):
        wave = min(num_envs, num_episodes - first)
        episodes = _record_wave(env, controller, seed + first, wave)
        for episode_obs, episode_actions, success in episodes:
            if only_successful and not success:
                continue
            observations.append(episode_obs)
            actions.append(episode_actions)
            episode_index.append(np.full(len(episode_obs), kept, dtype=np.int64))
            kept += 1
    low, high = env.single_action_space.low, env.single_action_space.high
    env.close()
    if not observations:
        raise RuntimeError(f"the {task!r} expert succeeded in none of {num_episodes} episodes; check the expert")
    return Demonstrations(np.concatenate(observations), np.concatenate(actions), np.concatenate(episode_index),
                          task=task, action_low=low, action_high=high)


def _record_wave(env, controller, first_seed: int, wave: int):
    """One batch of episodes seeded first_seed.. : list of (obs (T, obs_dim), actions (T, act_dim), success)."""
    active = np.arange(env.num_envs) < wave
    result = rollout_episodes(env, controller, first_seed + np.arange(env.num_envs), active=active, record=True)
    return [(*result.episode(i), bool(result.success[i])) for i in range(wave)]


# ---------------------------------------------------------------------------------------------- normalizer
class Normalizer(nn.Module):
    """Affine map x -> (x - center) / scale with fixed statistics, saved with the model."""

    def __init__(self, center: torch.Tensor, scale: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("center", torch.as_tensor(center, dtype=torch.float32).clone())
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32).clone())

    @classmethod
    def mean_std(cls, data: np.ndarray, min_std: float = 1e-2) -> "Normalizer":
        """Standardize each column; near-constant columns keep a floor std so noise is not amplified."""
        return cls(torch.as_tensor(data.mean(axis=0)), torch.as_tensor(np.maximum(data.std(axis=0), min_std)))

    @classmethod
    def min_max(cls, data: np.ndarray, min_range: float = 1e-2) -> "Normalizer":
        """Map each column's [min, max] onto [-1, 1] (diffusion samples live in that box)."""
        low, high = data.min(axis=0), data.max(axis=0)
        return cls(torch.as_tensor((high + low) / 2), torch.as_tensor(np.maximum((high - low) / 2, min_range / 2)))

    @classmethod
    def identity(cls, dim: int) -> "Normalizer":
        return cls(torch.zeros(dim), torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.center) / self.scale

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.scale + self.center


# ---------------------------------------------------------------------------------------------- schedule
def cosine_lr(step: int, total: int, warmup: int = 0) -> float:
    """Learning-rate multiplier: linear warm-up then cosine decay to 0."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


# ---------------------------------------------------------------------------------------------- action queue
class ActionQueue:
    """Per-env queue of planned actions: a policy that plans chunks pops one action per step per env."""

    def __init__(self, act_dim: int, capacity: int) -> None:
        self.act_dim, self.capacity = act_dim, capacity
        self.actions = np.zeros((0, capacity, act_dim), dtype=np.float32)  # (num_envs, capacity, act_dim)
        self.remaining = np.zeros(0, dtype=np.int64)  # (num_envs,) actions left in each env's queue

    def ensure_batch(self, num_envs: int) -> None:
        """Resize for a new batch size; a different batch means new episodes, so every queue is cleared."""
        if len(self.remaining) != num_envs:
            self.actions = np.zeros((num_envs, self.capacity, self.act_dim), dtype=np.float32)
            self.remaining = np.zeros(num_envs, dtype=np.int64)

    def empty(self) -> np.ndarray:
        """(num_envs,) bool: envs that need a new plan."""
        return self.remaining == 0

    def fill(self, env_ids: np.ndarray, chunks: np.ndarray) -> None:
        """Queue `chunks` (len(env_ids), capacity, act_dim) for `env_ids`."""
        self.actions[env_ids] = chunks
        self.remaining[env_ids] = self.capacity

    def pop(self) -> np.ndarray:
        """The next action of every env (num_envs, act_dim); every queue must be non-empty."""
        index = self.capacity - self.remaining
        action = self.actions[np.arange(len(index)), index]
        self.remaining -= 1
        return action

    def clear(self, env_ids: np.ndarray | None = None) -> None:
        if env_ids is None:
            self.remaining[:] = 0
            return
        env_ids = np.asarray(env_ids, dtype=np.int64)
        self.remaining[env_ids[env_ids < len(self.remaining)]] = 0  # envs not seen yet have nothing queued


# ---------------------------------------------------------------------------------------------- checkpoints
@dataclass
class Fitted:
    """An imitation policy and what trained it: the module whose weights are saved, the optimizer, the loss
    per gradient step and the demonstrations (the last three None for a policy saved on its own)."""

    policy: Any
    net: nn.Module
    optimizer: torch.optim.Optimizer | None = None
    losses: list[float] | None = None
    demos: Demonstrations | None = None


def save_il_policy(algo: str, fitted: Fitted, out: str | Path, *,
                   dataset: "str | Path | Demonstrations | None" = None) -> Path:
    """Write an imitation policy in the one checkpoint format: weights of `fitted.net`, normalizers, config
    (with the dataset it learned from when that is a directory), optimizer state and a loss summary."""
    policy, losses = fitted.policy, fitted.losses or []
    num_episodes = fitted.demos.num_episodes if fitted.demos is not None else None
    record = dataset_record(dataset, num_episodes) if isinstance(dataset, (str, Path)) else None
    spec = policy_spec(algo, policy.task, policy.obs_dim, policy.act_dim, policy.action_low, policy.action_high,
                       policy.config)
    normalizer = {f"{name}.{key}": value.detach().cpu().numpy() for name, norm in
                  (("obs", policy.obs_norm), ("action", policy.action_norm)) for key, value in norm.state_dict().items()}
    state = {"step": len(losses), "final_loss": float(np.mean(losses[-100:])) if losses else None,
             "losses": losses[:: max(1, len(losses) // 1000)], "num_episodes": num_episodes}
    config = {"algo": algo, "task": policy.task or "", "config": policy.config.model_dump(), "policy": spec,
              "dataset": record}
    optimizer = fitted.optimizer.state_dict() if fitted.optimizer is not None else None
    return save_checkpoint(out, model=fitted.net.state_dict(), normalizer=normalizer, config=config, state=state,
                           optimizer=optimizer)


def read_il_checkpoint(path: str | Path, algo: str | None = None
                       ) -> tuple[dict, dict[str, torch.Tensor], dict[str, dict[str, torch.Tensor]]]:
    """(policy spec, model tensors, normalizer tensors by name) of an imitation checkpoint (or its run
    directory); `algo` refuses a checkpoint written by another algorithm."""
    loaded = load_checkpoint(path, training_state=False)
    spec = policy_section(loaded)
    if algo is not None and spec["algo"] != algo:
        raise CheckpointError(f"{loaded['path'] / CONFIG_FILE} has algo={spec['algo']!r}, expected {algo!r}")
    return spec, loaded["model"], group_normalizers(loaded["normalizer"])


def group_normalizers(flat: dict[str, Any]) -> dict[str, dict[str, torch.Tensor]]:
    """{'obs.center': t, ...} -> {'obs': {'center': t, 'scale': t}, ...}."""
    grouped: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in flat.items():
        name, _, field = key.partition(".")
        grouped.setdefault(name, {})[field] = torch.as_tensor(value)
    return grouped


def policy_spec(algo: str, task: str | None, obs_dim: int, act_dim: int, low: torch.Tensor, high: torch.Tensor,
                config: BaseModel) -> dict[str, Any]:
    """config.json's 'policy' section, shared with `embodia.learn.load_policy`: what rebuilds the actor."""
    spec = {"algo": algo, "task": task or "", "obs_dim": obs_dim, "act_dim": act_dim,
            "action_low": low.tolist(), "action_high": high.tolist(), algo: config.model_dump()}
    image_keys = list(getattr(config, "image_keys", []) or [])
    if image_keys:
        spec |= {"image_keys": image_keys, "image_size": int(config.image_size)}
    return spec


def plot_losses(losses: list[float] | np.ndarray, path: str | Path, title: str) -> Path:
    """Save a training-loss curve (log scale, smoothed) as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    losses = np.asarray(losses, dtype=np.float64)
    window = max(1, len(losses) // 50)
    smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=110)
    ax.plot(np.arange(len(losses)), losses, color="0.8", lw=0.6, label="per step")
    ax.plot(np.arange(len(smooth)) + window - 1, smooth, color="C0", lw=1.6, label=f"mean of {window}")
    ax.set(yscale="log", xlabel="gradient step", ylabel="loss", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------- evaluation
def rollout_success(policy, task: str, num_episodes: int, *, seed: int = 10_000, num_envs: int = 50,
                    task_config: dict | None = None, randomization: Any = None) -> dict[str, float]:
    """Run `num_episodes` seeded episodes of `policy` (batched `act(obs)`) on a fresh batch of `task`."""
    env = BatchEnv(task, max(1, min(num_envs, num_episodes)), seed=seed, autoreset_mode="disabled",
                   task_config=task_config, randomization=randomization)
    try:
        return run_episodes(env, policy, num_episodes, seed=seed)
    finally:
        env.close()


def run_episodes(env, policy, num_episodes: int, *, seed: int = 10_000) -> dict[str, float]:
    """Success rate and mean return of `policy` over episodes seeded seed, seed+1, ... on an autoreset-disabled env.

    An episode counts as a success if the task reported success at any step before it ended.
    """
    successes, returns = [], []
    with torch_threads(1):
        for first in range(0, num_episodes, env.num_envs):
            wave = min(env.num_envs, num_episodes - first)
            result = rollout_episodes(env, policy, seed + first + np.arange(env.num_envs),
                                      active=np.arange(env.num_envs) < wave)
            successes.append(result.success[:wave])
            returns.append(result.episode_return[:wave])
    success, episode_return = np.concatenate(successes), np.concatenate(returns)
    return {"success_rate": float(success.mean()), "mean_return": float(episode_return.mean()),
            "episodes": int(len(success))}


# ---------------------------------------------------------------------------------------------- training loop
def fit(loss_fn: Callable[[torch.Tensor], torch.Tensor], parameters: list[nn.Parameter], *, num_frames: int,
        num_steps: int, batch_size: int, learning_rate: float, weight_decay: float, seed: int,
        description: str, on_step: Callable[[int], None] | None = None, reporter: Reporter | None = None,
        num_threads: int = 1) -> tuple[torch.optim.Optimizer, list[float]]:
    """Minibatch AdamW with warm-up + cosine decay; `loss_fn(frame_ids)` returns the scalar loss of a batch.

    Stops with `TrainingDiverged` on a non-finite loss and with `Cancelled` when the reporter asks."""
    reporter = reporter_or_null(reporter)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=weight_decay)
    warmup = min(500, num_steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: cosine_lr(step, num_steps, warmup))
    losses: list[float] = []
    reporter.start(description, total=num_steps, unit="steps")
    with torch_threads(num_threads):
        for step in range(num_steps):
            frame_ids = torch.randint(0, num_frames, (min(batch_size, num_frames),), generator=generator)
            loss = loss_fn(frame_ids)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(parameters, 10.0)
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
            if not math.isfinite(losses[-1]):
                raise TrainingDiverged(f"{description}: the loss became {losses[-1]} at gradient step {step}; "
                                       "lower learning_rate (e.g. --set learning_rate=1e-4); nothing was saved")
            if on_step is not None:
                on_step(step)
            if step % 50 == 0 or step == num_steps - 1:
                reporter.update(step + 1, metrics={"loss": float(np.mean(losses[-50:]))})
                check_cancelled(reporter, f"{description} at gradient step {step + 1}")
    reporter.finish()
    return optimizer, losses


def dataset_record(root: str | Path, num_episodes: int) -> dict[str, Any]:
    """What an imitation checkpoint records of its dataset: path, sha256 of `meta/info.json`, episode count."""
    root = Path(root)
    return {"path": str(root), "info_sha256": hash_file(root / "meta" / "info.json"), "episodes": int(num_episodes)}


def as_demonstrations(dataset: "str | Path | Demonstrations") -> Demonstrations:
    """Accept a dataset directory or in-memory demonstrations."""
    return dataset if isinstance(dataset, Demonstrations) else load_demonstrations(dataset)


def action_bounds(demos: Demonstrations) -> tuple[np.ndarray, np.ndarray]:
    """The action box to clip to: the dataset's declared bounds, else the range seen in the data."""
    if demos.action_low is not None and demos.action_high is not None:
        return np.asarray(demos.action_low, np.float32), np.asarray(demos.action_high, np.float32)
    return demos.actions.min(axis=0), demos.actions.max(axis=0)
