"""Wall-clock for PPO to reach >= 95 % success on arm-reach (deterministic policy, success at the episode's end).

Every `--eval-every` PPO iterations the current policy runs 64 fresh episodes; training stops at the target.
Evaluation time is reported separately and not counted in the training wall-clock.
Usage: python benchmarks/reach_time_to_success.py [--max-steps 3000000] [--seed 0]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

TARGET = 0.95


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-steps", type=int, default=3_000_000, help="give up after this many env steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-every", type=int, default=2, help="PPO iterations between evaluations")
    parser.add_argument("--eval-episodes", type=int, default=64)
    args = parser.parse_args()

    from embodia.learn.train import train
    from embodia.learn.rollout import episode_returns
    from embodia.learn.trainer import live_policy

    start = time.perf_counter()
    eval_seconds = 0.0
    history: list[tuple[int, float, float]] = []  # (env steps, training seconds, success rate)

    def check(trainer) -> bool:
        nonlocal eval_seconds
        if trainer.iteration % args.eval_every:
            return False
        tick = time.perf_counter()
        _, success = episode_returns(live_policy(trainer), "arm-reach", num_envs=args.eval_episodes,
                                     seed=10_000 + trainer.iteration, success_at_end=True)
        eval_seconds += time.perf_counter() - tick
        history.append((trainer.global_step, time.perf_counter() - start - eval_seconds, float(success.mean())))
        print(f"{trainer.global_step:>9,} env steps  {history[-1][1]:6.1f} s  success {success.mean():.2f}", flush=True)
        return success.mean() >= TARGET

    with tempfile.TemporaryDirectory() as out:
        train("arm-reach", "ppo", total_steps=args.max_steps, seed=args.seed, out=Path(out),
              overrides={"progress": False, "tensorboard": False}, callback=check)
    reached = [h for h in history if h[2] >= TARGET]
    if reached:
        steps, seconds, rate = reached[0]
        print(f"arm-reach PPO reached {rate:.0%} success after {steps:,} env steps in {seconds:.1f} s of training "
              f"({eval_seconds:.1f} s more in evaluation); target <= 300 s")
    else:
        print(f"arm-reach PPO did not reach {TARGET:.0%} within {args.max_steps:,} steps; best {max(h[2] for h in history):.2f}")
    _plot(history)


def _plot(history: list[tuple[int, float, float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not history:
        return
    steps, seconds, rate = zip(*history)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(seconds, rate, marker="o")
    ax.axhline(TARGET, color="grey", linestyle="--", label="95 % target")
    ax.set_xlabel("training wall-clock (s), 2-core shared CPU")
    ax.set_ylabel("success rate (64 episodes)")
    ax.set_title("PPO on arm-reach")
    ax.set_ylim(0, 1.02)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(__file__).parent / "results" / "ppo_arm_reach_success.png"
    out.parent.mkdir(exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
