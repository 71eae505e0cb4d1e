"""The RL benchmarks' shared pieces: Stable-Baselines3 contenders (rl-zoo tuned, compute-matched to embodia, SB3
defaults), embodia runs, one deterministic evaluation for every contender, 95 % intervals and mean +- band curves.

rl-zoo's tuned hyperparameters come from the installed `rl_zoo3` package (`rl_zoo3/hyperparams/<algo>.yml`), read
as YAML; its `policy_kwargs` strings are parsed with `ast` (dict/list/number literals and `nn.<Activation>` only),
never `eval`. Gymnasium v5 ids map to rl-zoo's tuned v4 / v2 entries of the same robot and reward.
"""

from __future__ import annotations

import ast
import json
import math
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).parent / "results"
EVAL_EPISODES = 8
EVAL_SEED = 12345

# Gymnasium v5 id -> rl-zoo entry tuned for the same robot (no Pusher entry: its generic MuJoCo anchor, Ant-v4,
# is `normalize: true` over SB3's defaults, which rl-zoo applies to every untuned MuJoCo env).
ZOO_KEYS = {"ppo": {"HalfCheetah-v5": "HalfCheetah-v4", "Hopper-v5": "Hopper-v4", "Walker2d-v5": "Walker2d-v4",
                    "Ant-v5": "Ant-v4", "Reacher-v5": "Reacher-v2", "Pusher-v5": "Ant-v4",
                    "InvertedDoublePendulum-v5": "InvertedDoublePendulum-v2"},
            "sac": {"HalfCheetah-v5": "HalfCheetah-v4", "Hopper-v5": "Hopper-v4", "Walker2d-v5": "Walker2d-v4",
                    "Ant-v5": "Ant-v4"}}
# SB3 configured like embodia's shipped cheetah-run PPO (cheetah-run_ppo.yaml: 1024 samples a rollout, 8 epochs of
# minibatches of 128, lr 1e-3 annealed, gamma 0.98, lambda 0.92, initial log-std -1, 64x64 tanh), on 16 envs with
# VecNormalize: the "compute-matched" contender.
COMPUTE_MATCHED_PPO = {"n_envs": 16, "normalize": True, "n_steps": 64, "batch_size": 128, "n_epochs": 8,
                       "learning_rate": "lin_1e-3", "gamma": 0.98, "gae_lambda": 0.92,
                       "policy_kwargs": {"log_std_init": -1.0}}


# ---------------------------------------------------------------------------------------------- rl-zoo hyperparameters
def zoo_hyperparams(algo: str, env_id: str) -> tuple[str, dict[str, Any]]:
    """(rl-zoo entry used, its hyperparameters) for a Gymnasium id; KeyError names what exists."""
    import importlib.util

    import yaml

    key = ZOO_KEYS[algo].get(env_id)
    if key is None:
        raise KeyError(f"no rl-zoo {algo} entry mapped for {env_id}; mapped: {sorted(ZOO_KEYS[algo])}")
    spec = importlib.util.find_spec("rl_zoo3")  # its files only: importing rl_zoo3 pulls in huggingface_hub
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("rl_zoo3 is not installed: pip install rl_zoo3 (or --no-deps: only its YAML is read)")
    zoo_dir = Path(next(iter(spec.submodule_search_locations)))
    table = yaml.safe_load((zoo_dir / "hyperparams" / f"{algo}.yml").read_text())
    return key, dict(table[key])


def _literal(node: ast.AST) -> Any:
    """A policy_kwargs expression: dict(...)/{...}/[...]/numbers/strings and `nn.<Name>` activation classes."""
    from torch import nn

    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_literal(node.operand)
    if isinstance(node, ast.List | ast.Tuple):
        return [_literal(item) for item in node.elts]
    if isinstance(node, ast.Dict):
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args:
        return {kw.arg: _literal(kw.value) for kw in node.keywords}
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "nn":
        return getattr(nn, node.attr)
    raise ValueError(f"unsupported policy_kwargs expression: {ast.dump(node)}")


def _schedule(value: Any) -> Any:
    """rl-zoo's `lin_<x>` strings -> SB3's linear schedule (progress 1 -> 0); numbers unchanged."""
    if isinstance(value, str) and value.startswith("lin_"):
        start = float(value[4:])
        return lambda progress: progress * start
    return value


def sb3_kwargs(hyperparams: dict[str, Any]) -> tuple[int, dict | None, dict[str, Any]]:
    """(n_envs, VecNormalize kwargs or None, algorithm constructor kwargs) from an rl-zoo style dict."""
    hp = dict(hyperparams)
    for unused in ("n_timesteps", "policy", "env_wrapper", "frame_stack"):
        hp.pop(unused, None)
    n_envs = int(hp.pop("n_envs", 1))
    normalize = hp.pop("normalize", False)
    if isinstance(normalize, str):
        normalize = _literal(ast.parse(normalize, mode="eval").body)
    vec_normalize = (normalize if isinstance(normalize, dict) else {}) if normalize else None
    if "policy_kwargs" in hp and isinstance(hp["policy_kwargs"], str):
        hp["policy_kwargs"] = _literal(ast.parse(hp["policy_kwargs"], mode="eval").body)
    for name in ("learning_rate", "clip_range"):
        if name in hp:
            hp[name] = _schedule(hp[name])
    return n_envs, vec_normalize, hp


# ---------------------------------------------------------------------------------------------- evaluation
def evaluate(act: Callable[[np.ndarray], np.ndarray], source: str, num_episodes: int = EVAL_EPISODES) -> float:
    """Mean deterministic return over `num_episodes` (an embodia task, or `gym:<id>` on Gymnasium's own envs)."""
    if not source.startswith("gym:"):
        from embodia.learn.rollout import episode_returns

        return float(episode_returns(act, source, num_envs=num_episodes, seed=EVAL_SEED)[0].mean())
    import gymnasium as gym

    # next-step autoreset: an env that ended resets on its next step, which the `alive` mask leaves out
    env = gym.make_vec(source[4:], num_envs=num_episodes, vectorization_mode="sync",
                       vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP})
    obs, _ = env.reset(seed=EVAL_SEED)
    returns, alive = np.zeros(num_episodes), np.ones(num_episodes, dtype=bool)
    while alive.any():
        obs, reward, terminated, truncated, _ = env.step(np.asarray(act(obs), dtype=np.float32))
        returns += np.where(alive, reward, 0.0)
        alive &= ~(terminated | truncated)
    env.close()
    return float(returns.mean())


def curve_due(step: int, batch: int, every: int) -> bool:
    """True when the last `batch` env steps crossed a multiple of `every`."""
    return step // every > (step - batch) // every


# ---------------------------------------------------------------------------------------------- contenders
def run_embodia(source: str, algo: str, steps: int, seed: int, overrides: dict | None = None,
                eval_every: int = 20_480) -> dict:
    """Train with embodia (its shipped or automatic config under `overrides`); training steps/s excludes the
    curve evaluations."""
    from embodia.learn import load_policy
    from embodia.learn.train import train
    from embodia.learn.trainer import live_policy

    curve: list[tuple[int, float]] = []
    eval_seconds, eval_cpu, last_step = [0.0], [0.0], [0]

    def evaluate_now(trainer) -> bool:
        batch, last_step[0] = trainer.global_step - last_step[0], trainer.global_step
        if curve_due(trainer.global_step, batch, eval_every):
            began, began_cpu = time.perf_counter(), time.process_time()
            curve.append((trainer.global_step, evaluate(live_policy(trainer).act, source)))
            eval_seconds[0] += time.perf_counter() - began
            eval_cpu[0] += time.process_time() - began_cpu
        return False

    with tempfile.TemporaryDirectory() as out:
        start, start_cpu = time.perf_counter(), time.process_time()
        run = train(source, algo, total_steps=steps, seed=seed, out=Path(out), callback=evaluate_now,
                    overrides={"progress": False, "tensorboard": False, **(overrides or {})})
        elapsed = time.perf_counter() - start - eval_seconds[0]
        cpu = time.process_time() - start_cpu - eval_cpu[0]
        steps_done = json.loads((run / "checkpoints" / "final" / "state.json").read_text())["global_step"]
        final = evaluate(load_policy(run).act, source)
    return _result(steps_done, elapsed, final, curve, cpu)


def sb3_env(source: str):
    """The single Gymnasium env SB3 trains on: Gymnasium's own for `gym:<id>`, else embodia's registered id."""
    import gymnasium as gym

    if source.startswith("gym:"):
        return gym.make(source[4:])
    from embodia.tasks.gym_envs import GYM_IDS, register_envs

    register_envs()
    return gym.make(next(k for k, v in GYM_IDS.items() if v == source))


def run_sb3(source: str, algo: str, steps: int, seed: int, hyperparams: dict[str, Any] | None = None,
            eval_every: int = 20_480) -> dict:
    """Train SB3 `algo` with rl-zoo style `hyperparams` (None: SB3's defaults on one env); same measurements."""
    import stable_baselines3 as sb3
    import torch
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    torch.set_num_threads(1)  # SB3's small networks lose to thread contention on a shared 2-core machine
    n_envs, vec_normalize, kwargs = sb3_kwargs(hyperparams or {})
    venv = make_vec_env(lambda: sb3_env(source), n_envs=n_envs, seed=seed)
    if vec_normalize is not None:
        venv = VecNormalize(venv, gamma=kwargs.get("gamma", 0.99), **vec_normalize)
    model = getattr(sb3, algo.upper())("MlpPolicy", venv, seed=seed, verbose=0, device="cpu", **kwargs)

    def act(obs: np.ndarray) -> np.ndarray:
        if vec_normalize is not None:
            obs = venv.normalize_obs(obs)
        return model.predict(obs, deterministic=True)[0]

    class Curve(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.points: list[tuple[int, float]] = []
            self.seconds, self.cpu_seconds = 0.0, 0.0

        def _on_step(self) -> bool:
            if curve_due(self.num_timesteps, n_envs, eval_every):
                began, began_cpu = time.perf_counter(), time.process_time()
                self.points.append((self.num_timesteps, evaluate(act, source)))
                self.seconds += time.perf_counter() - began
                self.cpu_seconds += time.process_time() - began_cpu
            return True

    curve = Curve()
    start, start_cpu = time.perf_counter(), time.process_time()
    model.learn(steps, callback=curve)
    elapsed = time.perf_counter() - start - curve.seconds
    cpu = time.process_time() - start_cpu - curve.cpu_seconds
    result = _result(model.num_timesteps, elapsed, evaluate(act, source), curve.points, cpu)
    venv.close()
    return result


def _result(steps: int, seconds: float, final: float, curve: list[tuple[int, float]],
            cpu_seconds: float | None = None) -> dict:
    """One run's record; `cpu_sps` (env steps per CPU-second of this process, all its threads) when timed."""
    if not math.isfinite(final):
        raise ValueError(f"non-finite final return {final}")
    result = {"steps": steps, "seconds": seconds, "sps": steps / seconds, "final_return": final,
              "curve": [*[p for p in curve if p[0] < steps], (steps, final)]}
    if cpu_seconds is not None:
        result.update(cpu_seconds=cpu_seconds, cpu_sps=steps / cpu_seconds)
    return result


# ---------------------------------------------------------------------------------------------- statistics
def mean_ci(values: list[float]) -> tuple[float, float]:
    """(mean, half-width of the 95 % Student-t interval); half-width NaN for a single value."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return float(x.mean()), float("nan")
    return float(x.mean()), float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))


def fmt_ci(values: list[float], digits: int = 0) -> str:
    """'mean ± half-width' for a table cell."""
    mean, half = mean_ci(values)
    return f"{mean:.{digits}f} ± {half:.{digits}f}" if math.isfinite(half) else f"{mean:.{digits}f}"


def paired_speed_ratio(ours: list[dict], theirs: list[dict], key: str = "sps") -> tuple[float, float, float]:
    """(median, min, max) of the per-seed ratios of `key` (env-steps/s; "cpu_sps": per CPU-second), seed by seed."""
    ratios = [a[key] / b[key] for a, b in zip(ours, theirs, strict=True)]
    return float(np.median(ratios)), float(min(ratios)), float(max(ratios))


def save_results(name: str, record: dict, text: str) -> None:
    """Write `record` as results/<name>.json and its report `text` as results/<name>.md (atomically), print it."""
    from embodia.core.atomic import atomic_write_text

    RESULTS.mkdir(exist_ok=True)
    atomic_write_text(RESULTS / f"{name}.json", json.dumps(record, indent=1))
    atomic_write_text(RESULTS / f"{name}.md", text)
    print(text)


def hand_written_reading(page: Path, plot_line: str) -> str:
    """What follows a generated page's last line `plot_line` (its plot) in the page now: the reading a person
    added under it, so a re-run that rebuilds the page keeps it ("" when the page or the line is missing)."""
    if not page.exists():
        return ""
    before, found, after = page.read_text().partition(plot_line + "\n")
    reading = after.strip("\n")
    return f"\n{reading}\n" if found and reading else ""


def load_line() -> str:
    """The 1/5/15-minute load averages, for the figures' caption."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.1f} / {five:.1f} / {fifteen:.1f} (1/5/15 min) on {os.cpu_count()} CPUs"


# ---------------------------------------------------------------------------------------------- plots
def plot_curves(results: dict[str, list[dict]], title: str, path: Path, ax=None,
                colors: dict[str, str] | None = None) -> None:
    """Deterministic return vs env steps: mean over seeds as a line, min..max over seeds as a band; `colors`
    keeps one colour per contender across panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(7, 4))
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for (name, runs), color in zip(results.items(), cycle):
        color = (colors or {}).get(name, color)
        points = min(len(run["curve"]) for run in runs)
        steps = np.mean([[s for s, _ in run["curve"][:points]] for run in runs], axis=0)
        values = np.array([[v for _, v in run["curve"][:points]] for run in runs])
        ax.plot(steps, values.mean(axis=0), color=color, marker="o", ms=3, label=f"{name} ({len(runs)} seeds)")
        ax.fill_between(steps, values.min(axis=0), values.max(axis=0), color=color, alpha=0.2)
    ax.set_xlabel("env steps")
    ax.set_ylabel(f"deterministic return ({EVAL_EPISODES} episodes)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    if own:
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
