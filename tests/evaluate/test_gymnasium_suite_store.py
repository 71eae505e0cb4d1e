"""The Gymnasium suite's result store: processes running side by side (other tasks or other contenders) all
update one JSON file, and none loses what another stored."""

import json
import multiprocessing
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def suite(benchmarks_importable):
    import gymnasium_suite

    return gymnasium_suite


def _entry(name: str, runs: int) -> dict:
    return {"zero_action": -1.0, name: {"steps": 10, "batch": "b", "runs": [{"final_return": float(i)}
                                                                        for i in range(runs)]}}


def _store_tasks(path: str, name: str, tasks: int) -> None:
    """Store contender `name` on tasks T0..T<tasks-1>, one save each (a lost update loses a task's contender)."""
    import gymnasium_suite

    for task in range(tasks):
        gymnasium_suite.save_task(Path(path), f"T{task}", _entry(name, 1), [name])


def test_save_task_keeps_other_contenders_and_tasks(suite, tmp_path: Path) -> None:
    path = tmp_path / "suite.json"
    suite.save_task(path, "Hopper-v5", _entry(suite.ZOO, 5), [suite.ZOO])
    suite.save_task(path, "Hopper-v5", _entry(suite.DEFAULTS, 3), [suite.DEFAULTS])
    suite.save_task(path, "Ant-v5", _entry(suite.ZOO, 2), [suite.ZOO])
    stored = json.loads(path.read_text())
    assert len(stored["Hopper-v5"][suite.ZOO]["runs"]) == 5
    assert len(stored["Hopper-v5"][suite.DEFAULTS]["runs"]) == 3
    assert len(stored["Ant-v5"][suite.ZOO]["runs"]) == 2


def test_two_processes_storing_side_by_side_lose_nothing(suite, tmp_path: Path) -> None:
    path, tasks = tmp_path / "suite.json", 200
    context = multiprocessing.get_context("spawn")  # the children find gymnasium_suite on the parent's sys.path
    workers = [context.Process(target=_store_tasks, args=(str(path), name, tasks)) for name in (suite.ZOO, suite.DEFAULTS)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    stored = json.loads(path.read_text())
    missing = [(task, name) for task in (f"T{t}" for t in range(tasks)) for name in (suite.ZOO, suite.DEFAULTS)
               if name not in stored.get(task, {})]
    assert missing == []


def test_a_rebuilt_page_keeps_the_reading_written_under_its_plot(suite, tmp_path: Path) -> None:
    page, png = tmp_path / "suite.md", tmp_path / "suite.png"
    store = {"Hopper-v5": _entry(suite.EMBODIA, 2)}
    first = suite.report(store, png)
    assert first.rstrip().endswith("![suite learning curves](suite.png)")
    assert suite.hand_written_reading(page, suite.plot_line(png)) == ""  # no page yet
    page.write_text(first + "\nReading: Hopper learns.\n\nSecond paragraph.\n")
    rebuilt = suite.report(store, png) + suite.hand_written_reading(page, suite.plot_line(png))
    assert rebuilt == first + "\nReading: Hopper learns.\n\nSecond paragraph.\n"
    page.write_text("a page someone rewrote without the plot line\n")
    assert suite.hand_written_reading(page, suite.plot_line(png)) == ""


def test_the_sac_page_ends_on_its_plot_line_so_a_rerun_keeps_its_reading(benchmarks_importable, tmp_path: Path) -> None:
    import sac_vs_sb3
    from rl_baselines import hand_written_reading

    runs = [{"final_return": float(seed), "sps": 10.0 + seed, "cpu_sps": 20.0} for seed in range(2)]
    record = {"steps": 100, "learning_starts": 10, "load": ["load a", "load b"], "runs": {"ours": runs, "SB3": runs}}
    page = tmp_path / "rl_sac.md"
    generated = sac_vs_sb3.report(record)
    assert generated.rstrip().endswith(sac_vs_sb3.PLOT_LINE)
    page.write_text(generated + "\nReading: SAC ran.\n")
    assert sac_vs_sb3.report(record) + hand_written_reading(page, sac_vs_sb3.PLOT_LINE) == page.read_text()


def test_speed_compares_wall_clock_when_embodia_ran_its_physics_on_threads(suite) -> None:
    """Per CPU-second by default; with physics threads per CPU-second would hide what they buy, so wall clock (§)."""
    def runs(sps, cpu_sps, **extra):
        return [{"final_return": 1.0, "sps": sps, "cpu_sps": cpu_sps, **extra} for _ in range(3)]

    entry = {"zero_action": 0.0, suite.EMBODIA: {"batch": "b", "runs": runs(600.0, 400.0)},
             suite.ZOO: {"batch": "b", "runs": runs(100.0, 100.0)}}
    assert suite._speed_cell(entry, suite.ZOO) == ("4.0x (4.0–4.0)", "**NOT MET**")
    entry[suite.EMBODIA]["runs"] = runs(600.0, 400.0, physics_threads=2)
    assert suite._speed_cell(entry, suite.ZOO) == ("6.0x (6.0–6.0) §", "met")
