"""embodia PPO vs Stable-Baselines3 PPO at equal env steps: env-steps/s, final return, raw-simulation ceiling.

Runs every contender in this one process, one after another, so the ratios share the machine's load.
Usage: python benchmarks/ppo_vs_sb3.py [--steps 100000] [--seeds 2] [--no-gym]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
EVAL_EPISODES = 8
EVAL_SEED = 12345


def raw_sim_ceiling(task: str, num_envs: int, steps: int = 300) -> float:
    """Env-steps/s of bare `mujoco.rollout` on the task's model: one call per control step, random controls."""
    import mujoco
    import mujoco.rollout

    from embodia.tasks.env import BatchEnv

    env = BatchEnv(task, num_envs=num_envs)
    model, frame_skip, nthread = env.model, env.sim.frame_skip, env.sim.nthread
    state = np.tile(env.sim.initial_state, (num_envs, 1))
    env.close()
    datas = [mujoco.MjData(model) for _ in range(nthread)]
    rollout = mujoco.rollout.Rollout(nthread=nthread if nthread > 1 else 0)
    ctrl = np.random.default_rng(0).uniform(-1, 1, (steps, num_envs, frame_skip, model.nu))
    out_state = np.zeros((num_envs, frame_skip, state.shape[1]))
    start = time.perf_counter()
    for step in range(steps):
        rollout.rollout([model] * num_envs, datas, state, ctrl[step], nstep=frame_skip, state=out_state)
        state = out_state[:, -1].copy()
    elapsed = time.perf_counter() - start
    rollout.close()
    return num_envs * steps / elapsed


def evaluate(act, source: str, num_episodes: int = EVAL_EPISODES) -> float:
    """Mean deterministic return over `num_episodes` (an embodia task or gym:<id>), one batch of envs."""
    if not source.startswith("gym:"):
        from embodia.learn.rollout import episode_returns

        return float(episode_returns(act, source, num_envs=num_episodes, seed=EVAL_SEED)[0].mean())
    import gymnasium as gym

    env = gym.make_vec(source[4:], num_envs=num_episodes, vectorization_mode="sync",
                       vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.DISABLED})
    obs, _ = env.reset(seed=EVAL_SEED)
    returns, alive = np.zeros(num_episodes), np.ones(num_episodes, dtype=bool)
    while alive.any():
        obs, reward, terminated, truncated, _ = env.step(np.asarray(act(obs), dtype=np.float32))
        returns += np.where(alive, reward, 0.0)
        alive &= ~(terminated | truncated)
    env.close()
    return float(returns.mean())


EVAL_EVERY = 20_480  # env steps between the learning-curve evaluations (their time is not counted as training)


def run_embodia(source: str, algo: str, steps: int, seed: int, overrides: dict | None = None) -> dict:
    """Train with embodia; returns steps/s (training wall-clock), final return and the evaluation curve."""
    from embodia.learn import load_policy
    from embodia.learn.train import train
    from embodia.learn.trainer import live_policy

    curve: list[tuple[int, float]] = []
    eval_seconds = [0.0]

    def evaluate_now(trainer) -> bool:
        if trainer.global_step // EVAL_EVERY > (trainer.global_step - trainer.batch_size) // EVAL_EVERY:
            began = time.perf_counter()
            curve.append((trainer.global_step, evaluate(live_policy(trainer).act, source)))
            eval_seconds[0] += time.perf_counter() - began
        return False

    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        run = train(source, algo, total_steps=steps, seed=seed, out=Path(out), callback=evaluate_now,
                    overrides={"progress": False, "tensorboard": False, **(overrides or {})})
        elapsed = time.perf_counter() - start - eval_seconds[0]
        policy = load_policy(run)
        steps_done = json.loads((run / "checkpoints" / "final" / "state.json").read_text())["global_step"]
        final = evaluate(policy.act, source)
        return {"steps": steps_done, "seconds": elapsed, "sps": steps_done / elapsed,
                "final_return": final, "curve": [*curve, (steps_done, final)]}


def _sb3_env(source: str):
    import gymnasium as gym

    if source.startswith("gym:"):
        return gym.make(source[4:])
    from embodia.tasks.gym_envs import GYM_IDS, register_envs

    register_envs()
    gym_id = next(k for k, v in GYM_IDS.items() if v == source)
    return gym.make(gym_id)


def run_sb3(source: str, algo: str, steps: int, seed: int) -> dict:
    """Train Stable-Baselines3 with its defaults on one env (its standard setup); same measurements."""
    import stable_baselines3 as sb3
    from stable_baselines3.common.callbacks import BaseCallback

    class Curve(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.points: list[tuple[int, float]] = []
            self.seconds = 0.0

        def _on_step(self) -> bool:
            if self.num_timesteps % EVAL_EVERY == 0:
                began = time.perf_counter()
                act = lambda obs: self.model.predict(obs, deterministic=True)[0]  # noqa: E731
                self.points.append((self.num_timesteps, evaluate(act, source)))
                self.seconds += time.perf_counter() - began
            return True

    model = getattr(sb3, algo.upper())("MlpPolicy", _sb3_env(source), seed=seed, verbose=0, device="cpu")
    curve = Curve()
    start = time.perf_counter()
    model.learn(steps, callback=curve)
    elapsed = time.perf_counter() - start - curve.seconds
    act = lambda obs: model.predict(obs, deterministic=True)[0]  # noqa: E731
    final = evaluate(act, source)
    return {"steps": steps, "seconds": elapsed, "sps": steps / elapsed, "final_return": final,
            "curve": [*curve.points, (model.num_timesteps, final)]}


def plot_curves(results: dict[str, list[dict]], title: str, path: Path) -> None:
    """Deterministic evaluation return vs env steps, one line per contender and seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for (name, runs), color in zip(results.items(), plt.rcParams["axes.prop_cycle"].by_key()["color"]):
        for i, run in enumerate(runs):
            if run["curve"]:
                x, y = zip(*run["curve"])
                ax.plot(x, y, color=color, alpha=0.9, marker="o", ms=3, label=name if i == 0 else None)
    ax.set_xlabel("env steps")
    ax.set_ylabel(f"deterministic return ({EVAL_EPISODES} episodes)")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def summarize(name: str, runs: list[dict]) -> str:
    sps = np.mean([r["sps"] for r in runs])
    ret = [r["final_return"] for r in runs]
    return f"{name:34s} {sps:10,.0f} env-steps/s   final return {np.mean(ret):8.1f} (seeds: {', '.join(f'{v:.0f}' for v in ret)})"


def compare(source: str, algo: str, steps: int, seeds: int, embodia_overrides: dict | None = None) -> dict[str, list[dict]]:
    """Both contenders on one env, every seed; prints a summary and the ratios."""
    ours = [run_embodia(source, algo, steps, seed, embodia_overrides) for seed in range(seeds)]
    theirs = [run_sb3(source, algo, steps, seed) for seed in range(seeds)]
    print(summarize(f"embodia {algo} on {source}", ours))
    print(summarize(f"SB3 {algo} on {source}", theirs))
    ratio = np.mean([r["sps"] for r in ours]) / np.mean([r["sps"] for r in theirs])
    print(f"  -> speed ratio embodia / SB3 = {ratio:.1f}x; return difference = "
          f"{np.mean([r['final_return'] for r in ours]) - np.mean([r['final_return'] for r in theirs]):+.1f}")
    return {f"embodia {algo}": ours, f"SB3 {algo}": theirs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=100_000, help="env steps per training run")
    parser.add_argument("--seeds", type=int, default=2, help="seeds per contender")
    parser.add_argument("--no-gym", action="store_true", help="skip Gymnasium HalfCheetah-v5")
    args = parser.parse_args()
    began = time.perf_counter()
    shipped = _cheetah_ppo_overrides()
    ceiling = raw_sim_ceiling("cheetah-run", shipped["num_envs"])
    print(f"raw mujoco.rollout ceiling, cheetah model, {shipped['num_envs']} envs: {ceiling:,.0f} env-steps/s")
    rows = [("raw `mujoco.rollout`, cheetah model", f"ceiling ({shipped['num_envs']} envs)", ceiling, None)]
    results = compare("cheetah-run", "ppo", args.steps, args.seeds)
    rows += _report_targets("cheetah-run", results, ceiling)
    RESULTS.mkdir(exist_ok=True)
    plot_curves(results, f"PPO on cheetah-run, {args.steps:,} env steps", RESULTS / "ppo_cheetah_run.png")
    if not args.no_gym:
        gym_results = compare("gym:HalfCheetah-v5", "ppo", args.steps, args.seeds, embodia_overrides=shipped)
        rows += _report_targets("Gymnasium HalfCheetah-v5 (our adapter)", gym_results, ceiling)
        plot_curves(gym_results, f"PPO on Gymnasium HalfCheetah-v5, {args.steps:,} env steps",
                    RESULTS / "ppo_halfcheetah_v5.png")
    print(f"\n{args.steps:,} env steps per run, {args.seeds} seed(s), {time.perf_counter() - began:.0f} s in all\n")
    print("| env | contender | env-steps/s | final return (per seed) |\n|---|---|---:|---:|")
    for env, name, sps, returns in rows:
        ret = "–" if returns is None else f"{np.mean(returns):.0f} ({', '.join(f'{r:.0f}' for r in returns)})"
        print(f"| {env} | {name} | {sps:,.0f} | {ret} |")


SPEEDUP_TARGET, CEILING_TARGET = 10.0, 0.40


def _report_targets(env: str, results: dict[str, list[dict]], ceiling: float) -> list[tuple]:
    """Print whether embodia meets the issue's targets against SB3 on this env; returns the table rows."""
    ours, theirs = results["embodia ppo"], results["SB3 ppo"]
    ours_sps, sb3_sps = np.mean([r["sps"] for r in ours]), np.mean([r["sps"] for r in theirs])
    ours_ret, sb3_ret = np.mean([r["final_return"] for r in ours]), np.mean([r["final_return"] for r in theirs])
    checks = {f">= {SPEEDUP_TARGET:.0f}x SB3 env-steps/s": (ours_sps / sb3_sps, ours_sps / sb3_sps >= SPEEDUP_TARGET),
              f">= {100 * CEILING_TARGET:.0f}% of the raw ceiling": (ours_sps / ceiling, ours_sps / ceiling >= CEILING_TARGET),
              "final return >= SB3's": (ours_ret - sb3_ret, ours_ret >= sb3_ret)}
    for name, (value, met) in checks.items():
        print(f"  [{'met' if met else 'NOT MET'}] {env}: {name} ({value:.2f})")
    return [(env, "embodia PPO (shipped config)", ours_sps, [r["final_return"] for r in ours]),
            (env, "SB3 PPO (defaults)", sb3_sps, [r["final_return"] for r in theirs])]


def _cheetah_ppo_overrides() -> dict:
    """cheetah-run's shipped PPO settings, reused for Gymnasium's HalfCheetah-v5 (same robot and reward)."""
    from embodia.learn.config import config_path, read_yaml

    settings = read_yaml(config_path("cheetah-run", "ppo"))
    settings.pop("total_steps", None)
    return settings


if __name__ == "__main__":
    main()
