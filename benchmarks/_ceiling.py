"""The one fast raw-simulation ceiling every benchmark compares against, and the interleaved way to measure.

`RawRollout` is the fastest call `mujoco.rollout` offers for a task's model: preallocated outputs, persistent
threads, checks skipped, random controls drawn the way a contender draws its actions, no observation or reward.
`interleave` runs contenders A, B, A, B ... in one time window and `paired_ratios` takes the median of the
per-round ratios, so a load change hits every contender alike. Import it from a benchmark script:
`from _ceiling import RawRollout, interleave, load_line` (benchmarks/ is on sys.path when a script there runs).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

import mujoco
import mujoco.rollout
import numpy as np

import embodia  # noqa: F401  (picks the GL backend; it adopts an earlier mujoco import)


class RawRollout:
    """`num_envs` copies of a task's model advanced one control step (`frame_skip` substeps) per `step()`."""

    def __init__(self, task: str, num_envs: int, nthread: int, seed: int = 0) -> None:
        from embodia.tasks.registry import make_task

        spec = make_task(task)
        self.model = spec.build_model()
        self.frame_skip = spec.config.frame_skip
        self.num_envs = num_envs
        self.nthread = max(1, nthread)
        self._datas = [mujoco.MjData(self.model) for _ in range(self.nthread)]
        state_spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
        initial = np.zeros(mujoco.mj_stateSize(self.model, state_spec))
        mujoco.mj_getState(self.model, self._datas[0], initial, state_spec)
        self.state = np.tile(initial, (num_envs, 1))  # (num_envs, nstate)
        self._out_state = np.zeros((num_envs, self.frame_skip, initial.size))
        self._out_sensor = np.zeros((num_envs, self.frame_skip, self.model.nsensordata))
        self._control = np.zeros((num_envs, self.frame_skip, self.model.nu))
        self._models = [self.model] * num_envs
        low, high = self.model.actuator_ctrlrange[:, 0], self.model.actuator_ctrlrange[:, 1]
        self._ctrl_low, self._ctrl_high = low, high
        self._rng = np.random.default_rng(seed)
        self._chunk_size = max(1, num_envs // (self.nthread * 10))
        self._runner = mujoco.rollout.Rollout(nthread=self.nthread if self.nthread > 1 else 0)

    def step(self) -> None:
        """One control step of every env under uniform random controls."""
        self._control[:] = self._rng.uniform(self._ctrl_low, self._ctrl_high, (self.num_envs, 1, self.model.nu))
        self._runner.rollout(self._models, self._datas, self.state, self._control, nstep=self.frame_skip,
                             state=self._out_state, sensordata=self._out_sensor, skip_checks=True,
                             chunk_size=self._chunk_size)
        self.state[:] = self._out_state[:, -1]

    def close(self) -> None:
        """Stop the rollout threads."""
        if self._runner is not None:
            self._runner.close()
            self._runner = None


def steps_per_second(step: Callable[[], object], steps_per_call: int, seconds: float,
                     clock: Callable[[], float] = time.perf_counter) -> float:
    """Call `step` for about `seconds` of `clock` (after one warm-up call); env-steps per second.

    `clock=time.process_time` counts this process's CPU time: for single-threaded contenders on a machine
    loaded far beyond its cores, that measures the work where wall time measures the scheduler.
    """
    step()
    calls, start = 0, clock()
    while clock() - start < seconds:
        step()
        calls += 1
    return calls * steps_per_call / (clock() - start)


def interleave(contenders: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Run every measurement once per round in order A, B, C, A, B, C ...; the figures of each, per round."""
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, measure in contenders.items():
            samples[name].append(measure())
    return samples


def alternating(names: list[str], round_index: int) -> list[str]:
    """The contenders in round `round_index`'s order: as given in even rounds, reversed in odd ones, so that no
    contender always runs first (right after the other's caches and allocations) in a paired A/B benchmark."""
    return list(names) if round_index % 2 == 0 else list(names)[::-1]


def paired_ratios(numerator: list[float], denominator: list[float]) -> list[float]:
    """Per-round ratios of two interleaved series (same round, same load)."""
    return [a / b for a, b in zip(numerator, denominator, strict=True)]


def median_ratio(numerator: list[float], denominator: list[float]) -> float:
    """Median of the paired per-round ratios: robust to one round hit by a load spike."""
    return statistics.median(paired_ratios(numerator, denominator))


def load_line() -> str:
    """The 1/5/15-minute load averages and CPU count, for the figures' caption."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} (1/5/15 min) on {os.cpu_count()} CPUs"
