"""Success rate of the scripted arm experts over seeded episodes under each task's default domain randomization.

Usage: python benchmarks/expert_success.py [--episodes 200] [--tasks arm-reach,arm-push,arm-pick-place]
An episode succeeds when the task's success holds at its last step (the goal reached and kept).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from embodia.data.experts import make_expert
from embodia.tasks import BatchEnv
from embodia.tasks.arm_common import default_randomization


def run_episodes(task: str, episodes: int, seed: int, progress: Progress, policy: str = "expert") -> dict:
    """Run `episodes` seeded episodes in one batch with the expert (or uniform random actions); success rates."""
    env = BatchEnv(task, episodes, seed=seed, randomization=default_randomization(task), autoreset_mode="disabled")
    expert = make_expert(task, env)
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    ever = np.zeros(episodes, dtype=bool)
    ended = np.zeros(episodes, dtype=bool)
    final = np.zeros(episodes, dtype=bool)
    job = progress.add_task(f"{task} ({policy})", total=env.max_episode_steps)
    for _ in range(env.max_episode_steps):
        action = expert.act(obs) if policy == "expert" else rng.uniform(-1, 1, (episodes, env.action_dim))
        obs, _, terminated, truncated, info = env.step(action)
        ever |= info["success"] & ~ended
        final = np.where(ended, final, info["success"] & ~terminated)
        ended |= terminated
        progress.advance(job)
    env.close()
    return {"final": final.mean(), "any": ever.mean(), "terminated": ended.mean(), "steps": episodes * env.max_episode_steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--tasks", default="arm-reach,arm-push,arm-pick-place")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    table = Table(title=f"scripted experts, {args.episodes} episodes, default randomization, seed {args.seed}")
    for column in ("task", "policy", "success (final step)", "success (any step)", "cube fell", "wall s", "env steps/s"):
        table.add_column(column)
    with Progress() as progress:
        for task in args.tasks.split(","):
            for policy in ("expert", "random"):
                start = time.perf_counter()
                rates = run_episodes(task, args.episodes, args.seed, progress, policy)
                wall_s = time.perf_counter() - start
                table.add_row(task, policy, f"{rates['final']:.1%}", f"{rates['any']:.1%}",
                              f"{rates['terminated']:.1%}", f"{wall_s:.1f}", f"{rates['steps'] / wall_s:,.0f}")
    Console().print(table)


if __name__ == "__main__":
    main()
