"""Vision BC on arm-reach with the goal removed from the state: state-only (no goal), vision (no goal + cameras)
and full-state BC trained on the same camera dataset in the same run; held-out action MSE, success, render rate.

    taskset -c 1 .venv/bin/python benchmarks/vision_bc.py --episodes 64 --steps 1500 --size 32
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from embodia.data.generate import GenerateConfig, generate
from embodia.learn.bc import action_mse, load_bc, train_bc
from embodia.learn.il_common import rollout_success
from embodia.learn.vision import VisionDemonstrations, camera_rollout_success, load_vision_demonstrations

KEYS = ["observation.images.front", "observation.images.wrist"]
NO_GOAL = list(range(15))


def subset(demos: VisionDemonstrations, mask: np.ndarray) -> VisionDemonstrations:
    """The frames of `demos` selected by `mask`, images included."""
    return VisionDemonstrations(demos.observations[mask], demos.actions[mask], demos.episode_index[mask], demos.task,
                                demos.action_low, demos.action_high, images={k: v[mask] for k, v in demos.images.items()})


def render_rate(size: int, num_envs: int = 16, repeats: int = 10) -> float:
    """Camera frames/s of BatchEnv.render over a batch (per-env rendering, one GL context)."""
    from embodia.tasks import BatchEnv

    env = BatchEnv("arm-reach", num_envs, seed=0, autoreset_mode="disabled")
    env.reset(seed=0)
    env.render(None, camera="front", width=size, height=size)  # context creation is not a per-frame cost
    start = time.perf_counter()
    for _ in range(repeats):
        env.render(None, camera="front", width=size, height=size)
    elapsed = time.perf_counter() - start
    env.close()
    return num_envs * repeats / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--episodes", type=int, default=64)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--eval-episodes", type=int, default=32)
    parser.add_argument("--out", type=Path, default=Path("/tmp/vision_bc_bench"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    shutil.rmtree(args.out, ignore_errors=True)
    start = time.perf_counter()
    generate(GenerateConfig(task="arm-reach", episodes=args.episodes, cameras=["front", "wrist"], image_size=args.size,
                            visual_randomization=None, envs_per_worker=16, stop_on_success=False),
             args.out / "data")
    print(f"dataset: {args.episodes} episodes, 2 cameras at {args.size} px in {time.perf_counter() - start:.1f} s")
    demos = load_vision_demonstrations(args.out / "data", KEYS, args.size)
    held_out = demos.episode_index >= int(0.8 * args.episodes)
    train, val = subset(demos, ~held_out), subset(demos, held_out)
    base = {"num_steps": args.steps, "hidden_sizes": [128, 128], "batch_size": 64}
    variants = {"state, goal removed": base | {"state_indices": NO_GOAL},
                "state (goal removed) + front & wrist cameras": base | {
                    "state_indices": NO_GOAL, "image_keys": KEYS, "image_size": args.size, "image_channels": 16,
                    "random_shift_px": 2},
                "full state (ceiling)": base}
    print("| policy | train time | train MSE | held-out MSE | success | eval frames/s |")
    print("|---|---|---|---|---|---|")
    for name, config in variants.items():
        start = time.perf_counter()
        policy = load_bc(train_bc(train, config, args.out / name.split(",")[0].replace(" ", "_")))
        train_s = time.perf_counter() - start
        if "image_keys" in config:
            result = camera_rollout_success(policy, "arm-reach", args.eval_episodes, seed=1_000_000)
            fps = f"{result['frames_per_s']:.0f}"
        else:
            result, fps = rollout_success(policy, "arm-reach", args.eval_episodes, seed=1_000_000, num_envs=16), "—"
        print(f"| {name} | {train_s:.1f} s | {action_mse(policy, train):.4f} | {action_mse(policy, val):.4f} | "
              f"{100 * result['success_rate']:.0f} % | {fps} |")
    for size in (32, 64, 128):
        print(f"render arm-reach front camera {size}x{size}: {render_rate(size):.0f} frames/s")


if __name__ == "__main__":
    main()
