"""Streaming MP4 writer: frames encoded on a background thread, the file appears whole or not at all."""

import numpy as np
import pytest

from embodia.sim.video import VideoWriter, read_video


def moving_frames(count: int, height: int = 48, width: int = 64) -> np.ndarray:
    frames = np.zeros((count, height, width, 3), dtype=np.uint8)
    for t in range(count):
        frames[t, :, (t * 3) % width: (t * 3) % width + 8] = (200, 120, 40)  # a bar moving right
    return frames


def test_frames_written_one_by_one_decode_in_order(tmp_path):
    frames = moving_frames(30)
    with VideoWriter(tmp_path / "clip.mp4", width=64, height=48, fps=25, preset="veryfast") as writer:
        for frame in frames:
            writer.write(frame)
    decoded = read_video(tmp_path / "clip.mp4")
    assert decoded.shape == frames.shape
    assert np.abs(decoded.astype(int) - frames).mean() < 2.0
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]  # no temporary file left


def test_odd_sizes_lose_the_last_row_and_column(tmp_path):
    with VideoWriter(tmp_path / "odd.mp4", width=65, height=49) as writer:
        for frame in moving_frames(4, 49, 65):
            writer.write(frame)
    assert read_video(tmp_path / "odd.mp4").shape == (4, 48, 64, 3)


def test_a_wrong_frame_or_an_error_leaves_no_file(tmp_path):
    with (pytest.raises(ValueError, match=r"frame must be \(48, 64, 3\) uint8"),
          VideoWriter(tmp_path / "bad.mp4", width=64, height=48) as writer):
        writer.write(moving_frames(1)[0])
        writer.write(np.zeros((48, 64), dtype=np.uint8))
    with pytest.raises(KeyError), VideoWriter(tmp_path / "stopped.mp4", width=64, height=48) as writer:
        writer.write(moving_frames(1)[0])
        raise KeyError("stopped")
    assert list(tmp_path.iterdir()) == []


def test_an_encoder_failure_reaches_the_writer(tmp_path):
    import av

    writer = VideoWriter(tmp_path / "fail.mp4", width=64, height=48, preset="no-such-preset")
    with pytest.raises(av.error.FFmpegError):  # libx264 refuses the preset as the encoder opens, on its thread
        for frame in moving_frames(20):
            writer.write(frame)
        writer.close()
    assert list(tmp_path.iterdir()) == []
