import json

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from embodia.learn.logger import RunLogger


def test_logger_writes_jsonl_and_tensorboard_scalars(tmp_path):
    logger = RunLogger(tmp_path, total_steps=100)
    logger.log_episodes(10, np.array([1.0, 3.0]), np.array([5, 5]), np.array([True, False]))
    logger.log_scalars(20, {"losses/pg_loss": 0.5, "charts/steps_per_second": 1000.0})
    logger.advance(20, 1000.0)
    assert logger.mean_return() == 2.0 and logger.success_rate() == 0.5
    logger.close()
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines[0] == {"step": 10, "charts/episode_return": 2.0, "charts/episode_length": 5.0, "charts/success_rate": 0.5}
    assert lines[1]["losses/pg_loss"] == 0.5
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"charts/episode_return", "charts/success_rate", "losses/pg_loss", "charts/steps_per_second"} <= tags
    assert events.Scalars("charts/episode_return")[0].value == 2.0
