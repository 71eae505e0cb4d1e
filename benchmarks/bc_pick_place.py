"""Imitation on arm-pick-place: generate expert demos (LeRobot dataset), train BC (and optionally the diffusion
policy) from the dataset, and evaluate on seeded episodes next to the expert (ceiling) and random actions (floor).

    .venv/bin/python benchmarks/bc_pick_place.py --demos 200 --eval-episodes 100 [--diffusion]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

from embodia.data.experts import make_expert
from embodia.data.generate import GenerateConfig, generate
from embodia.learn.bc import BCConfig, load_bc, train_bc
from embodia.learn.diffusion import DiffusionConfig, load_diffusion, train_diffusion
from embodia.learn.il_common import load_demonstrations, run_episodes
from embodia.tasks import BatchEnv
from embodia.tasks.arm_common import default_randomization

TASK = "arm-pick-place"
EVAL_SEED = 1_000_000  # evaluation episode seeds: EVAL_SEED, EVAL_SEED + 1, ... (demos use generate's seeds)


def evaluate(make_policy, episodes: int) -> dict[str, float]:
    """Success rate of a policy built on the evaluation env, with the same physics randomization as the demos."""
    env = BatchEnv(TASK, min(50, episodes), seed=EVAL_SEED, randomization=default_randomization(TASK),
                   autoreset_mode="disabled")
    try:
        return run_episodes(env, make_policy(env), episodes, seed=EVAL_SEED)
    finally:
        env.close()


def random_policy(env):
    rng = np.random.default_rng(0)
    low, high = env.single_action_space.low, env.single_action_space.high
    return lambda obs: rng.uniform(low, high, (len(obs), len(low)))


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demos", type=int, default=200, help="expert demonstrations to clone")
    parser.add_argument("--eval-episodes", type=int, default=100, help="seeded evaluation episodes per policy")
    parser.add_argument("--bc-steps", type=int, default=5000, help="BC gradient steps")
    parser.add_argument("--diffusion", action="store_true", help="also train and evaluate the diffusion policy")
    parser.add_argument("--diffusion-steps", type=int, default=5000, help="diffusion gradient steps")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_il"), help="work directory (dataset, checkpoints)")
    parser.add_argument("--plot", type=Path, default=Path("benchmarks/results/il_bc_pick_place_loss.png"),
                        help="where to copy the BC training-loss curve")
    args = parser.parse_args()

    dataset = args.out / "dataset"
    shutil.rmtree(dataset, ignore_errors=True)
    stats, generate_s = timed(generate, GenerateConfig(task=TASK, episodes=args.demos, keep="success",
                                                       envs_per_worker=50, seed=0), dataset)
    demos = load_demonstrations(dataset)
    print(f"demos: {stats['episodes']} episodes kept of {stats['attempts']} attempts, {len(demos.observations)} frames, "
          f"{generate_s:.1f} s")

    results: dict[str, dict] = {}
    for name, make_policy in (("expert", lambda env: make_expert(TASK, env)), ("random", random_policy)):
        row, eval_s = timed(evaluate, make_policy, args.eval_episodes)
        results[name] = row | {"eval_s": eval_s}

    bc_dir, train_s = timed(train_bc, dataset, BCConfig(num_steps=args.bc_steps), args.out / "bc")
    results["bc"], eval_s = timed(evaluate, lambda env: load_bc(bc_dir), args.eval_episodes)
    results["bc"] |= {"train_s": train_s, "eval_s": eval_s}
    args.plot.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(bc_dir / "loss.png", args.plot)

    if args.diffusion:
        dp_dir, train_s = timed(train_diffusion, dataset, DiffusionConfig(num_steps=args.diffusion_steps),
                                args.out / "diffusion")
        results["diffusion"], eval_s = timed(evaluate, lambda env: load_diffusion(dp_dir), args.eval_episodes)
        results["diffusion"] |= {"train_s": train_s, "eval_s": eval_s}
        shutil.copyfile(dp_dir / "loss.png", args.plot.with_name(args.plot.name.replace("bc", "diffusion")))

    print(f"\n{TASK}: {args.demos} demos, {args.eval_episodes} evaluation episodes (seeds {EVAL_SEED}..)")
    print(f"{'policy':<10} {'success':>8} {'return':>8} {'train s':>8} {'eval s':>7}")
    for name, row in results.items():
        print(f"{name:<10} {row['success_rate']:>8.0%} {row['mean_return']:>8.1f} {row.get('train_s', 0):>8.1f} "
              f"{row['eval_s']:>7.1f}")
    ratio = results["bc"]["success_rate"] / max(results["expert"]["success_rate"], 1e-9)
    print(f"BC reaches {ratio:.0%} of the expert's success rate")
    (args.out / "results.json").write_text(json.dumps({"generate_s": generate_s, **results}, indent=2))


if __name__ == "__main__":
    main()
