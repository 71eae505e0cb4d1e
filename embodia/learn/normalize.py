"""Running observation and reward normalizers (NumPy, float64), with state dicts for checkpoints."""

from __future__ import annotations

import math

import numpy as np

from embodia.core.errors import CheckpointError


class RunningMeanStd:
    """Mean and variance of a stream of batches (Chan et al. parallel update), e.g. observations."""

    def __init__(self, shape: tuple[int, ...] = (), epsilon: float = 1e-4) -> None:
        self.mean = np.zeros(shape, dtype=np.float64)
        self.var = np.ones(shape, dtype=np.float64)
        self.count = float(epsilon)

    def update(self, batch: np.ndarray) -> None:
        """Fold a batch (B, *shape) into the running statistics."""
        if batch.dtype.kind != "f":
            batch = batch.astype(np.float64)  # what .mean() / .var() compute integers in
        if batch.ndim == 1 and np.ndim(self.mean) == 0:
            self._update_scalar(batch)
            return
        batch_count = batch.shape[0]
        # batch.mean(axis=0) and batch.var(axis=0), the same operations without their Python-level overhead
        # (this runs every env step of a rollout)
        mean_row = np.add.reduce(batch, axis=0, keepdims=True)
        mean_row /= batch_count
        deviation = batch - mean_row
        np.multiply(deviation, deviation, out=deviation)
        batch_var = np.add.reduce(deviation, axis=0)
        batch_var /= batch_count
        batch_mean = mean_row[0]
        delta = batch_mean - self.mean
        total = self.count + batch_count
        self.mean = self.mean + delta * batch_count / total
        m2 = self.var * self.count + batch_var * batch_count + delta**2 * self.count * batch_count / total
        self.var = m2 / total
        self.count = total

    def _update_scalar(self, batch: np.ndarray) -> None:
        """`update` of a scalar statistic from a (B,) batch: the same float64 operations in the same order, on
        Python floats after the two sums (a third of the NumPy calls; reward scaling runs this every env step)."""
        batch_count = batch.shape[0]
        batch_mean = float(np.add.reduce(batch)) / batch_count
        deviation = batch - batch_mean
        np.multiply(deviation, deviation, out=deviation)
        batch_var = float(np.add.reduce(deviation)) / batch_count
        mean, var, count = float(self.mean), float(self.var), self.count
        delta = batch_mean - mean
        total = count + batch_count
        self.mean = np.float64(mean + delta * batch_count / total)
        m2 = var * count + batch_var * batch_count + delta**2 * count * batch_count / total  # **: pow, as NumPy's
        self.var = np.float64(m2 / total)
        self.count = total

    def state_dict(self) -> dict[str, np.ndarray]:
        """Arrays to save in a checkpoint."""
        return {"mean": self.mean.copy(), "var": self.var.copy(), "count": np.array([self.count])}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore from `state_dict()` output."""
        if np.size(state["mean"]) != self.mean.size:
            raise CheckpointError(f"normalizer mean has shape {np.shape(state['mean'])}, expected {self.mean.shape}: "
                                  "the checkpoint is for a different observation size")
        self.mean = np.asarray(state["mean"], dtype=np.float64).reshape(self.mean.shape).copy()
        self.var = np.asarray(state["var"], dtype=np.float64).reshape(self.var.shape).copy()
        self.count = float(np.asarray(state["count"]).reshape(-1)[0])


class ObsNormalizer:
    """z-scores observations with running statistics and clips them to +-`clip`."""

    def __init__(self, obs_dim: int, clip: float = 10.0, epsilon: float = 1e-8, enabled: bool = True) -> None:
        self.rms = RunningMeanStd((obs_dim,))
        self.clip = clip
        self.epsilon = epsilon
        self.enabled = enabled

    def update(self, obs: np.ndarray) -> None:
        """Fold a batch of raw observations (B, obs_dim) into the statistics (no-op when disabled)."""
        if self.enabled:
            self.rms.update(obs)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """Normalized observations, same shape."""
        if not self.enabled:
            return obs
        normalized = obs - self.rms.mean
        normalized /= np.sqrt(self.rms.var + self.epsilon)
        return np.minimum(np.maximum(normalized, -self.clip, out=normalized), self.clip, out=normalized)  # np.clip

    def scale_and_shift(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) so that normalized = clip((obs - mean) / std); identity when disabled."""
        if not self.enabled:
            return np.zeros_like(self.rms.mean), np.ones_like(self.rms.var)
        return self.rms.mean.copy(), np.sqrt(self.rms.var + self.epsilon)

    def state_dict(self) -> dict[str, np.ndarray]:
        return {f"obs_{k}": v for k, v in self.rms.state_dict().items()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.rms.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("obs_")})


class RewardScaler:
    """Divides rewards by the running std of the discounted return (as Gymnasium's NormalizeReward)."""

    def __init__(self, num_envs: int, gamma: float, clip: float = 10.0, epsilon: float = 1e-8, enabled: bool = True) -> None:
        self.rms = RunningMeanStd(())
        self.returns = np.zeros(num_envs, dtype=np.float64)  # (num_envs,) discounted return so far
        self.gamma = gamma
        self.clip = clip
        self.epsilon = epsilon
        self.enabled = enabled

    def __call__(self, reward: np.ndarray, done: np.ndarray) -> np.ndarray:
        """Update with this step's rewards (num_envs,) and return them scaled; `done` ends the return."""
        if not self.enabled:
            return reward
        self.returns = self.returns * self.gamma + reward
        self.rms.update(self.returns)
        scaled = reward / math.sqrt(float(self.rms.var) + self.epsilon)
        np.minimum(np.maximum(scaled, -self.clip, out=scaled), self.clip, out=scaled)  # np.clip's values
        self.returns[done] = 0.0
        return scaled

    def scale(self) -> float:
        """Current divisor applied to rewards."""
        return float(np.sqrt(self.rms.var + self.epsilon)) if self.enabled else 1.0

    def state_dict(self) -> dict[str, np.ndarray]:
        state = {f"ret_{k}": v for k, v in self.rms.state_dict().items()}
        state["ret_returns"] = self.returns.copy()
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.rms.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("ret_") and k != "ret_returns"})
        self.returns = np.asarray(state["ret_returns"], dtype=np.float64).copy()
