"""Evaluation throughput: all episodes of a scenario in one batched env vs one env per episode, same seeds.

Also checks that both give identical per-episode returns (episodes depend on their seed alone).
Run: .venv/bin/python benchmarks/eval_batched.py [--episodes 64]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from embodia.evaluate.conditions import ScenarioConditions
from embodia.evaluate.policies import resolve_policy
from embodia.evaluate.runner import make_env, rollout
from embodia.evaluate.suite import load_suite

LQR = f"{Path(__file__).resolve().parents[1] / 'tests' / 'evaluate' / 'cartpole_lqr.py'}:act"


def batched(suite, scenario, policy) -> tuple[np.ndarray, float]:
    """One env holding every episode."""
    seeds = suite.episode_seeds(scenario)
    start = time.perf_counter()
    env = make_env(suite, scenario, len(seeds))
    returns = rollout(env, ScenarioConditions(scenario, env), policy, seeds, suite.success_criterion).outcomes.episode_return
    env.close()
    return returns, time.perf_counter() - start


def one_by_one(suite, scenario, policy) -> tuple[np.ndarray, float]:
    """The usual evaluation loop: one env, one episode at a time."""
    seeds = suite.episode_seeds(scenario)
    start = time.perf_counter()
    env = make_env(suite, scenario, 1)
    conditions = ScenarioConditions(scenario, env)
    returns = np.concatenate([rollout(env, conditions, policy, seeds[i:i + 1], suite.success_criterion)
                              .outcomes.episode_return for i in range(len(seeds))])
    env.close()
    return returns, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--episodes", type=int, default=64)
    args = parser.parse_args()
    cases = [("cartpole-balance", "push", LQR), ("arm-reach", "push", "expert:arm-reach")]
    print("| task / scenario | policy | episodes | one env per episode (s) | batched (s) | speed-up | same returns |")
    print("|---|---|---|---|---|---|---|")
    for suite_name, scenario_name, spec in cases:
        suite = load_suite(suite_name)
        scenario = next(s for s in suite.scenarios if s.name == scenario_name).model_copy(update={"episodes": args.episodes})
        policy = resolve_policy(spec)
        batch_returns, batch_s = batched(suite, scenario, policy)
        loop_returns, loop_s = one_by_one(suite, scenario, policy)
        same = bool(np.allclose(batch_returns, loop_returns, rtol=1e-9, atol=1e-9))
        print(f"| {suite_name} / {scenario_name} | {Path(spec).name if ':' not in spec[:8] else spec} | {args.episodes} "
              f"| {loop_s:.2f} | {batch_s:.2f} | {loop_s / batch_s:.1f}x | {same} |")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
