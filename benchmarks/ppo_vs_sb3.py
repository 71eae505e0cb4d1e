"""embodia PPO vs Stable-Baselines3 PPO at equal env steps, against the strongest SB3 anchor (issue 11).

Contenders, run seed by seed in one process (round r: each contender with seed r), so every paired ratio shares
one stretch of machine load:
- embodia PPO on cheetah-run (HalfCheetah-v5's robot and reward; shipped `cheetah-run_ppo.yaml`);
- embodia PPO on Gymnasium's own HalfCheetah-v5 (same settings, through the Gymnasium adapter);
- SB3 PPO with rl-zoo's tuned HalfCheetah hyperparameters (VecNormalize, 1 env, 256x256 ReLU, 20 epochs ...)
  on Gymnasium's HalfCheetah-v5 — the anchor;
- SB3 PPO configured like embodia's shipped config (16 envs, 1024 samples a rollout, 8 epochs of minibatches of
  128, lr 1e-3 annealed, gamma 0.98, lambda 0.92, log-std -1, VecNormalize) on Gymnasium's HalfCheetah-v5.
The ceiling is the shared fast raw `mujoco.rollout` (benchmarks/_ceiling.py) on the cheetah model at embodia's
envs and threads, measured right before and right after embodia's cheetah-run run (their mean), so the share
compares one stretch of load. Final return = mean deterministic return over 8 episodes (seed 12345), the same code for everyone.
Usage: python benchmarks/ppo_vs_sb3.py [--steps 20480] [--seeds 5] [--sb3-defaults]
  ceiling share alone (embodia + ceiling, wall and CPU, and a per-part timing): --ceiling-only [--seeds 5]
  split over two processes: --seed-list 0,1,2 --json rl_ppo.a.json and --seed-list 3,4 --json rl_ppo.b.json, then
  --report-only --json rl_ppo.a.json rl_ppo.b.json
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from rl_baselines import (
    COMPUTE_MATCHED_PPO,
    RESULTS,
    fmt_ci,
    load_line,
    mean_ci,
    paired_speed_ratio,
    plot_curves,
    run_embodia,
    run_sb3,
    zoo_hyperparams,
)

from embodia.core.atomic import atomic_write_text

CHEETAH, GYM_CHEETAH = "cheetah-run", "gym:HalfCheetah-v5"
SPEEDUP_TARGET, GYM_SPEEDUP_TARGET, CEILING_TARGET = 10.0, 5.0, 0.50


def ceiling_sps(num_envs: int, nthread: int, seconds: float = 2.0) -> float:
    """Env-steps/s of the shared fast raw-rollout ceiling on the cheetah model (benchmarks/_ceiling.py)."""
    from _ceiling import RawRollout, steps_per_second

    raw = RawRollout(CHEETAH, num_envs, nthread)
    try:
        return steps_per_second(raw.step, num_envs, seconds)
    finally:
        raw.close()


def shipped_cheetah_settings() -> dict:
    """cheetah-run's shipped PPO settings, reused on Gymnasium's HalfCheetah-v5 (same robot and reward)."""
    from embodia.learn.config import config_path, read_yaml

    settings = read_yaml(config_path(CHEETAH, "ppo"))
    settings.pop("total_steps", None)
    return settings


def contenders(with_defaults: bool) -> dict:
    """name -> callable(steps, seed, eval_every) returning a run result."""
    shipped = shipped_cheetah_settings()
    zoo_key, zoo = zoo_hyperparams("ppo", "HalfCheetah-v5")
    runs = {
        "embodia PPO, cheetah-run": lambda s, seed, e: run_embodia(CHEETAH, "ppo", s, seed, eval_every=e),
        "embodia PPO, HalfCheetah-v5": lambda s, seed, e: run_embodia(GYM_CHEETAH, "ppo", s, seed, shipped, e),
        f"SB3 PPO rl-zoo tuned ({zoo_key}), HalfCheetah-v5": lambda s, seed, e: run_sb3(GYM_CHEETAH, "ppo", s, seed, zoo, e),
        "SB3 PPO compute-matched, HalfCheetah-v5": lambda s, seed, e: run_sb3(GYM_CHEETAH, "ppo", s, seed,
                                                                              COMPUTE_MATCHED_PPO, e),
    }
    if with_defaults:
        runs["SB3 PPO defaults, HalfCheetah-v5"] = lambda s, seed, e: run_sb3(GYM_CHEETAH, "ppo", s, seed, None, e)
    return runs


def run_rounds(steps: int, seeds: list[int], with_defaults: bool, out_json) -> dict:
    """Every contender once per seed, interleaved. The ceiling brackets embodia's cheetah-run training run (measured
    just before and just after it, same 128 envs and threads): the share compares two figures from one stretch of load."""
    from embodia.tasks.env import BatchEnv

    num_envs = shipped_cheetah_settings()["num_envs"]
    probe = BatchEnv(CHEETAH, num_envs=num_envs)
    nthread = probe.sim.nthread
    probe.close()
    runs = contenders(with_defaults)
    ours = next(iter(runs))
    began = time.perf_counter()
    record: dict = {"steps": steps, "seeds": len(seeds), "seed_list": list(seeds), "planned_seeds": len(seeds),
                    "num_envs": num_envs, "nthread": nthread, "ceiling": [], "ceiling_bracket": [], "load": [],
                    "runs": {name: [] for name in runs}}
    eval_every = max(2048, steps // 4)
    for seed in seeds:
        record["load"].append(load_line())
        for name, run in runs.items():
            before = ceiling_sps(num_envs, nthread) if name == ours else None
            record["runs"][name].append(run(steps, seed, eval_every))
            if name == ours:
                after = ceiling_sps(num_envs, nthread)
                record["ceiling_bracket"].append([before, after])
                record["ceiling"].append((before + after) / 2)
            print(f"seed {seed} {name}: {record['runs'][name][-1]['sps']:,.0f} env-steps/s, "
                  f"return {record['runs'][name][-1]['final_return']:.1f}  ({load_line()})", flush=True)
        record["seconds"] = time.perf_counter() - began
        atomic_write_text(out_json, json.dumps(record))  # partial results survive an interrupted run
    return record


def merge_records(records: list[dict]) -> dict:
    """One record from runs of disjoint seed lists (the same contenders and budget, run side by side)."""
    merged = json.loads(json.dumps(records[0]))
    for extra in records[1:]:
        if extra["steps"] != merged["steps"] or list(extra["runs"]) != list(merged["runs"]):
            raise ValueError("records differ in step budget or contenders; merge only parts of one benchmark")
        for key in ("ceiling", "ceiling_bracket", "load", "seed_list"):
            merged[key] = merged.get(key, []) + extra.get(key, [])
        for name in merged["runs"]:
            merged["runs"][name] += extra["runs"][name]
        merged["planned_seeds"] += extra.get("planned_seeds", extra["seeds"])
        merged["seconds"] = merged.get("seconds", 0.0) + extra.get("seconds", 0.0)  # run time summed over parts
    merged["seeds"] = len(merged["ceiling"])
    return merged


def report(record: dict, curves: str = "ppo_halfcheetah.png") -> str:
    """The markdown results section: table, paired ratios, targets met or not."""
    runs, ceiling, seconds = record["runs"], record["ceiling"], record.get("seconds", float("nan"))
    planned = record.get("planned_seeds", record["seeds"])
    stopped = (f" (**{record['seeds']} of {planned} planned seeds**: the run was stopped for lack of CPU; "
               "intervals need >= 2)") if record["seeds"] < planned else ""
    names = list(runs)
    ours, ours_gym, zoo, matched = (runs[n] for n in names[:4])
    lines = ["# PPO vs SB3 PPO (issue 11)", "",
             (f"`python benchmarks/ppo_vs_sb3.py --steps {record['steps']} --seeds {planned}` — "
             f"**{record['steps']:,} env steps per run, {record['seeds']} seed(s) per contender**{stopped}, "
              f"{seconds:.0f} s in all; "
             f"{record['load'][0]} at the start, {record['load'][-1]} at the last round. Round r runs every "
             "contender with seed r, so ratios are per-seed pairs from one stretch of load, the figure their median "
             "(min–max); the ceiling is measured right before and right after embodia's cheetah-run run (same envs "
             "and threads) and averaged. Return: mean ± 95 % t-interval over seeds of the deterministic "
             "return on 8 episodes (seed 12345), the same evaluation for every contender. The step budget is small "
             "(2 shared cores): rl-zoo's tuned settings are tuned for 1M steps, so the return column says who learns "
             "faster at this budget, not who ends higher. Threads: embodia's sim uses its "
             f"{record['nthread']} MuJoCo threads and torch 1 thread (its config); SB3 runs torch 1 thread."), "",
             "| contender | env-steps/s (mean) | final return (mean ± 95 % CI) | per seed |", "|---|---:|---:|---|"]
    lines.append(f"| fast raw `mujoco.rollout` ceiling, cheetah model, {record['num_envs']} envs, "
                 f"{record['nthread']} threads | {np.mean(ceiling):,.0f} | – | – |")
    for name, result in runs.items():
        returns = [r["final_return"] for r in result]
        lines.append(f"| {name} | {np.mean([r['sps'] for r in result]):,.0f} | {fmt_ci(returns)} | "
                     f"{', '.join(f'{v:.0f}' for v in returns)} |")
    lines += ["", "Targets (issue 11):", ""]
    for label, value, target, unit in [
        ("cheetah-run: embodia env-steps/s vs rl-zoo-tuned SB3", paired_speed_ratio(ours, zoo), SPEEDUP_TARGET, "x"),
        ("cheetah-run: embodia env-steps/s as a share of the fast ceiling",
         _ceiling_share(ours, ceiling), CEILING_TARGET, ""),
        ("HalfCheetah-v5: embodia env-steps/s vs rl-zoo-tuned SB3", paired_speed_ratio(ours_gym, zoo),
         GYM_SPEEDUP_TARGET, "x")]:
        median, low, high = value
        shown = (f"{median:.1f}x ({low:.1f}–{high:.1f})" if unit else f"{median:.0%} ({low:.0%}–{high:.0%})")
        goal = f">= {target:.0f}x" if unit else f">= {target:.0%}"
        lines.append(f"- **{'met' if median >= target else 'NOT MET'}** — {label}: {shown}, target {goal}")
    for label, a, b in [("cheetah-run", ours, zoo), ("HalfCheetah-v5", ours_gym, zoo)]:
        mine, theirs = [r["final_return"] for r in a], [r["final_return"] for r in b]
        verdict = "met" if mean_ci(mine)[0] >= mean_ci(theirs)[0] else "NOT MET"
        lines.append(f"- **{verdict}** — {label}: embodia return {fmt_ci(mine)} vs rl-zoo-tuned SB3 {fmt_ci(theirs)} "
                     "(target: not below SB3's mean)")
    ratio = paired_speed_ratio(ours, matched)
    lines += [(f"- For reference: embodia on cheetah-run vs SB3 compute-matched: {ratio[0]:.1f}x "
              f"({ratio[1]:.1f}–{ratio[2]:.1f}) env-steps/s."), "",
              f"Learning curves (mean over seeds, band = min..max over seeds): `{curves}`", "",
              f"![PPO learning curves]({curves})", ""]
    return "\n".join(lines)


def _ceiling_share(ours: list[dict], ceiling: list[float]) -> tuple[float, float, float]:
    shares = [r["sps"] / c for r, c in zip(ours, ceiling, strict=True)]
    return float(np.median(shares)), float(min(shares)), float(max(shares))


# ---------------------------------------------------------------------------------------------- ceiling share only
def ceiling_clocks(num_envs: int, nthread: int, seconds: float = 2.0) -> dict[str, float]:
    """The fast ceiling's env-steps per wall second and per CPU-second of this process (all its threads), one run."""
    from _ceiling import RawRollout

    raw = RawRollout(CHEETAH, num_envs, nthread)
    try:
        raw.step()
        calls, wall, cpu = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - wall < seconds:
            raw.step()
            calls += 1
        return {"sps": calls * num_envs / (time.perf_counter() - wall), "cpu_sps": calls * num_envs / (time.process_time() - cpu)}
    finally:
        raw.close()


def time_parts(iterations: int = 12) -> dict[str, dict[str, float]]:
    """Where PPO's time goes per 1,024 samples on cheetah-run (shipped config): env.step (MuJoCo + the env's
    Python), the rest of the rollout (policy, normalizers, storage) and the update; wall and CPU milliseconds."""
    from threadpoolctl import threadpool_limits

    from embodia.learn.ppo import PPOTrainer
    from embodia.learn.trainer import load_config
    from embodia.learn.vec_env import make_train_env

    config = load_config(CHEETAH, "ppo", None, {"progress": False, "tensorboard": False}, total_steps=10**6, seed=0)
    trainer = PPOTrainer(config, make_train_env(CHEETAH, config.num_envs, config.seed))
    totals = {part: [0.0, 0.0] for part in ("env.step", "rollout", "update")}
    env_step = trainer.env.step

    def timed(part: str, call, *args):
        wall, cpu = time.perf_counter(), time.process_time()
        out = call(*args)
        totals[part][0] += time.perf_counter() - wall
        totals[part][1] += time.process_time() - cpu
        return out

    trainer.env.step = lambda action: timed("env.step", env_step, action)
    with threadpool_limits(limits=config.torch_threads, user_api="blas"):
        for i in range(iterations + 2):
            if i == 2:  # two warm-up iterations
                totals = {part: [0.0, 0.0] for part in totals}
            timed("rollout", trainer.collect_rollout)
            timed("update", trainer.update)
            trainer.iteration += 1
    scale = 1000.0 * 1024 / (iterations * trainer.batch_size)  # ms per 1,024 samples
    env_part, rollout, update = (totals[p] for p in ("env.step", "rollout", "update"))
    parts = {"env.step (MuJoCo + env Python)": env_part,
             "rest of the rollout (policy, noise, normalizers, storage)": [r - e for r, e in zip(rollout, env_part)],
             "update (GAE, 8 epochs x 8 minibatches, Adam)": update}
    return {name: {"wall_ms": wall * scale, "cpu_ms": cpu * scale} for name, (wall, cpu) in parts.items()}


def run_ceiling_rounds(steps: int, seeds: list[int], out_json, parts: bool = True) -> dict:
    """embodia PPO on cheetah-run only, each run bracketed by the ceiling (wall and CPU clocks); then the parts."""
    from embodia.tasks.env import BatchEnv

    num_envs = shipped_cheetah_settings()["num_envs"]
    probe = BatchEnv(CHEETAH, num_envs=num_envs)
    nthread = probe.sim.nthread
    probe.close()
    record: dict = {"steps": steps, "seed_list": list(seeds), "num_envs": num_envs, "nthread": nthread,
                    "ceiling": [], "ceiling_bracket": [], "load": [], "runs": []}
    began = time.perf_counter()
    for seed in seeds:
        record["load"].append(load_line())
        before = ceiling_clocks(num_envs, nthread)
        run = run_embodia(CHEETAH, "ppo", steps, seed, eval_every=max(2048, steps // 4))
        after = ceiling_clocks(num_envs, nthread)
        record["ceiling_bracket"].append([before, after])
        record["ceiling"].append({k: (before[k] + after[k]) / 2 for k in before})
        record["runs"].append(run)
        print(f"seed {seed}: embodia {run['sps']:,.0f} env-steps/s ({run['cpu_sps']:,.0f} per CPU-s), ceiling "
              f"{record['ceiling'][-1]['sps']:,.0f} ({record['ceiling'][-1]['cpu_sps']:,.0f}), share "
              f"{run['sps'] / record['ceiling'][-1]['sps']:.0%}  ({load_line()})", flush=True)
        record["seconds"] = time.perf_counter() - began
        atomic_write_text(out_json, json.dumps(record))
    if not parts:
        return record
    record["parts_load"] = load_line()
    ceiling_before = ceiling_clocks(num_envs, nthread)
    record["parts"] = time_parts()
    ceiling_after = ceiling_clocks(num_envs, nthread)
    record["parts_ceiling"] = {k: (ceiling_before[k] + ceiling_after[k]) / 2 for k in ceiling_before}
    record["seconds"] = time.perf_counter() - began
    atomic_write_text(out_json, json.dumps(record))
    return record


def ceiling_report(record: dict) -> str:
    """The markdown for the ceiling-share-only run: per-seed shares (wall and CPU) and where the time goes."""
    runs, ceiling = record["runs"], record["ceiling"]
    wall = [r["sps"] / c["sps"] for r, c in zip(runs, ceiling, strict=True)]
    cpu = [r["cpu_sps"] / c["cpu_sps"] for r, c in zip(runs, ceiling, strict=True)]
    lines = ["# PPO share of the fast simulation ceiling (issue 11)", "",
             (f"`python benchmarks/ppo_vs_sb3.py --ceiling-only --steps {record['steps']} --seeds {len(runs)}` — "
              f"embodia PPO on cheetah-run (shipped `cheetah-run_ppo.yaml`: {record['num_envs']} envs x 16 steps, "
              f"8 epochs x 8 minibatches, 64x64 tanh), {record['steps']:,} env steps per seed, each training run "
              f"bracketed by the fast raw `mujoco.rollout` ceiling (benchmarks/_ceiling.py) at the same "
              f"{record['num_envs']} envs and {record['nthread']} MuJoCo threads, measured right before and right "
              f"after it on both clocks; {record['seconds']:.0f} s in all, {record['load'][0]} at the start, "
              f"{record['load'][-1]} at the last seed. Share = training env-steps/s (curve evaluations excluded, "
              "learning included) / ceiling env-steps/s; CPU = per CPU-second of the process (all its threads)."),
             "", ("| seed | embodia env-steps/s | ceiling env-steps/s | share (wall) | embodia per CPU-s | "
             "ceiling per CPU-s | share (CPU) | final return | load at start |"), "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for seed, run, ceil, w, c, load in zip(record["seed_list"], runs, ceiling, wall, cpu, record["load"], strict=True):
        lines.append(f"| {seed} | {run['sps']:,.0f} | {ceil['sps']:,.0f} | {w:.0%} | {run['cpu_sps']:,.0f} | "
                     f"{ceil['cpu_sps']:,.0f} | {c:.0%} | {run['final_return']:.0f} | {load.split(' (')[0]} |")
    verdict = "met" if np.median(wall) >= CEILING_TARGET else "NOT MET"
    lines += ["", (f"- **{verdict}** — share of the fast ceiling (wall clock, the target's measure): median "
              f"{np.median(wall):.0%} ({min(wall):.0%}–{max(wall):.0%}), target >= {CEILING_TARGET:.0%}"),
              f"- per CPU-second: median {np.median(cpu):.0%} ({min(cpu):.0%}–{max(cpu):.0%})",
              f"- return at {record['steps']:,} steps: {fmt_ci([r['final_return'] for r in runs])}", ""]
    ceil_ms = {k: 1000.0 * 1024 / v for k, v in record["parts_ceiling"].items()}
    lines += [(f"Where the time goes, per 1,024 samples (one rollout + its update; 12 iterations after 2 warm-up, "
              f"{record['parts_load']}; ceiling measured around it):"), "",
              "| part | wall ms | CPU ms |", "|---|---:|---:|"]
    for name, ms in record["parts"].items():
        lines.append(f"| {name} | {ms['wall_ms']:.1f} | {ms['cpu_ms']:.1f} |")
    total_wall = sum(ms["wall_ms"] for ms in record["parts"].values())
    total_cpu = sum(ms["cpu_ms"] for ms in record["parts"].values())
    lines += [f"| **total** | **{total_wall:.1f}** | **{total_cpu:.1f}** |",
              f"| fast ceiling, same 1,024 env steps | {ceil_ms['sps']:.1f} | {ceil_ms['cpu_sps']:.1f} |", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_480, help="env steps per training run")
    parser.add_argument("--seeds", type=int, default=5, help="seeds per contender (0 .. seeds-1)")
    parser.add_argument("--seed-list", type=str, default=None,
                        help="comma-separated seeds instead of --seeds (run parts side by side, then --report-only)")
    parser.add_argument("--json", nargs="+", default=["rl_ppo.json"],
                        help="results file(s) under benchmarks/results (several: merged by --report-only)")
    parser.add_argument("--sb3-defaults", action="store_true", help="also run SB3's defaults (1 env, no normalization)")
    parser.add_argument("--report-only", action="store_true", help="rebuild the report from the --json file(s)")
    parser.add_argument("--report-name", default="rl_ppo",
                        help="report file names under benchmarks/results: NAME.md and, for the curves, "
                             "NAME_halfcheetah.png (default rl_ppo.md and ppo_halfcheetah.png)")
    parser.add_argument("--ceiling-only", action="store_true",
                        help="only embodia on cheetah-run bracketed by the ceiling, plus a per-part timing: writes "
                             "rl_ppo_ceiling.md/json (the SB3 contenders take ~40 min; this ~2)")
    parser.add_argument("--skip-parts", action="store_true",
                        help="with --ceiling-only: no per-part timing and no report, only the --json record")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    if args.ceiling_only:
        seeds = [int(s) for s in args.seed_list.split(",")] if args.seed_list else list(range(args.seeds))
        out = RESULTS / ("rl_ppo_ceiling.json" if args.json == ["rl_ppo.json"] else args.json[0])
        if args.skip_parts:  # one part of an A/B or split run: the json only
            run_ceiling_rounds(args.steps, seeds, out, parts=False)
            return
        record = json.loads(out.read_text()) if args.report_only else run_ceiling_rounds(args.steps, seeds, out)
        text = ceiling_report(record)
        atomic_write_text(RESULTS / "rl_ppo_ceiling.md", text)
        print(text)
        return
    if args.report_only:
        parts = [json.loads((RESULTS / name).read_text()) for name in args.json]
        for part in parts:
            part["seeds"] = len(part["ceiling"])  # an interrupted run: the rounds that finished
            part.setdefault("planned_seeds", args.seeds)
        record = merge_records(parts)
    else:
        seeds = [int(s) for s in args.seed_list.split(",")] if args.seed_list else list(range(args.seeds))
        record = run_rounds(args.steps, seeds, args.sb3_defaults, RESULTS / args.json[0])
        if len(args.json) > 1 or args.seed_list:
            return  # one part of a split run: `--report-only --json <parts>` writes the report
    curves = "ppo_halfcheetah.png" if args.report_name == "rl_ppo" else f"{args.report_name}_halfcheetah.png"
    plot_curves(record["runs"], f"PPO, {record['steps']:,} env steps, {record['seeds']} seeds", RESULTS / curves)
    text = report(record, curves)
    atomic_write_text(RESULTS / f"{args.report_name}.md", text)
    print(text)


if __name__ == "__main__":
    main()
