"""The dataset page: self-contained HTML with stats, per-episode videos and plots."""

from __future__ import annotations

import base64
import re

from embodia.data.viewer import write_page


def test_page_embeds_videos_and_plots(synthetic_dataset, tmp_path):
    root, episodes = synthetic_dataset
    page = write_page(root, tmp_path / "page.html", max_episodes=2)
    text = page.read_text()
    videos = re.findall(r'src="data:video/mp4;base64,([^"]+)"', text)
    assert len(videos) == 2 * 2  # 2 episodes x 2 cameras
    assert base64.b64decode(videos[0])[4:8] == b"ftyp"
    plots = re.findall(r'src="data:image/png;base64,([^"]+)"', text)
    assert len(plots) == 1 + 2 and base64.b64decode(plots[1])[:4] == b"\x89PNG"
    assert "success rate</th><td>67%" in text
    assert "pick up the cube" in text
