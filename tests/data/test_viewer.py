"""The dataset page: self-contained HTML with stats, per-episode videos and named plots; every dataset string escaped."""

from __future__ import annotations

import base64
import re

import numpy as np
import pytest

from embodia.core.errors import UserError
from embodia.data.viewer import episode_figure, write_page

from .dataset_helpers import synthetic_episodes, synthetic_spec

SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'


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


@pytest.fixture(scope="module")
def hostile_dataset(tmp_path_factory):
    """A dataset whose camera, feature names, task strings, robot type and episode extras are HTML payloads."""
    from embodia.data.writer import write_dataset

    spec = synthetic_spec(cameras=("front",))
    features = dict(spec.features)
    features["observation.state"] = {**features["observation.state"], "names": [SCRIPT, IMG, "$\\frac$", "z"]}
    features["action"] = {**features["action"], "names": [IMG, SCRIPT]}
    spec = spec.model_copy(update={"features": features, "robot_type": SCRIPT, "cameras": {IMG: (32, 32)}})
    episodes = synthetic_episodes(2)
    for episode, task in zip(episodes, (SCRIPT, IMG)):
        episode.task = task
        episode.images = {IMG: episode.images["front"]}
        episode.info["note"] = SCRIPT + IMG
    root = tmp_path_factory.mktemp("hostile") / "ds"
    write_dataset(root, spec, episodes)
    return root


def test_hostile_dataset_strings_are_escaped(hostile_dataset, tmp_path):
    text = write_page(hostile_dataset, tmp_path / "page.html").read_text()
    assert SCRIPT not in text and IMG not in text and "<img src=x" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text  # shown as text: robot type, task, plot alt
    assert "camera &#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in text  # the camera caption
    assert text.count("<script>") == 1  # only the page's own hover-to-play script


def test_page_reads_on_a_phone_and_loads_videos_on_demand(synthetic_dataset, tmp_path):
    text = write_page(synthetic_dataset[0], tmp_path / "page.html", max_episodes=2).read_text()
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in text
    videos = re.findall(r"<video[^>]*>", text)
    assert len(videos) == 4 and all('preload="none"' in v and "autoplay" not in v for v in videos)
    assert "white-space:nowrap" in text and "tabular-nums" in text
    stats_row = re.search(r'<td>observation.state</td><td><span class="nums">(.*?)</span></td>', text).group(1)
    values = re.findall(r'<span class="n">([^<]*)</span>', stats_row)
    assert "".join(f'<span class="n">{v}</span>' for v in values) == stats_row  # numbers wrap only between values
    for value in values:  # rounded to 3 significant digits, thousands separated, never 1.23e+03
        assert re.fullmatch(r"-?\d{1,3}(,\d{3})*(\.\d+)?", value) and len(value.replace(",", "").replace(".", "")
                                                                            .replace("-", "").strip("0")) <= 3


def test_page_fits_a_phone_in_chromium_without_errors(hostile_dataset, tmp_path, phone_browser):
    page = write_page(hostile_dataset, tmp_path / "page.html", max_episodes=2)
    assert re.search(r"<title>Dataset .*: \d+ episodes, [\d,]+ frames at \d+ fps</title>", page.read_text())
    width, errors = phone_browser(page)
    assert width <= 390, f"the dataset page is {width} px wide on a 390 px phone (the body scrolls sideways)"
    assert errors == []


def test_plot_lines_carry_feature_names(hostile_dataset, tmp_path):
    from embodia.data.reader import Dataset

    ds = Dataset(hostile_dataset)
    figure = episode_figure(ds.episode(0, images=False), ds.fps, ds.features)
    state_axis, action_axis = figure.axes
    assert [t.get_text() for t in state_axis.get_legend().get_texts()] == [SCRIPT, IMG, "$\\frac$", "z"]
    assert [t.get_text() for t in action_axis.get_legend().get_texts()] == [IMG, SCRIPT]
    figure.savefig(tmp_path / "plot.png")  # a '$' in a name is literal text, not mathtext that fails to render
    ds.close()


def test_unnamed_features_are_numbered(synthetic_dataset):
    from embodia.data.reader import Dataset

    ds = Dataset(synthetic_dataset[0])
    figure = episode_figure(ds.episode(0, images=False), ds.fps, ds.features)
    assert [t.get_text() for t in figure.axes[1].get_legend().get_texts()] == ["d0", "d1"]
    ds.close()


def test_page_is_never_written_inside_the_dataset(synthetic_dataset, tmp_path):
    root = synthetic_dataset[0]
    before = sorted(p.name for p in root.rglob("*"))
    with pytest.raises(UserError, match="inside the dataset"):
        write_page(root, root / "index.html")
    assert sorted(p.name for p in root.rglob("*")) == before
    page = write_page(root, max_episodes=1)
    assert page == root.parent / "ds.html" and page.is_file()
    page.unlink()


def test_page_links_metadata_relative_to_itself(synthetic_dataset, tmp_path):
    root = synthetic_dataset[0]
    text = write_page(root, tmp_path / "sub" / "page.html", max_episodes=1).read_text()
    links = re.findall(r'href="([^"]+)"', text)
    assert links and all((tmp_path / "sub" / link).resolve().is_file() for link in links)
    assert np.all([link.endswith(("info.json", "stats.json")) for link in links])
