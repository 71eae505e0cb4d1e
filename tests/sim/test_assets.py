"""Model loading: bundled assets, user MJCF, and errors that name the file and line."""

import pytest

from embodia.sim import ModelLoadError, load_model

BROKEN = """<mujoco>
  <worldbody>
    <body>
      <geom type="sphere" size="oops"/>
    </body>
  </worldbody>
</mujoco>"""


def test_bundled_asset_loads_by_name():
    model = load_model("cheetah.xml")
    assert model.nu == 6


def test_user_mjcf_string_loads():
    model = load_model("<mujoco><worldbody><geom type='sphere' size='.1'/></worldbody></mujoco>")
    assert model.ngeom == 1


def test_broken_file_error_names_file_and_line(tmp_path):
    path = tmp_path / "robot.xml"
    path.write_text(BROKEN)
    with pytest.raises(ModelLoadError, match=r"robot\.xml, line 4"):
        load_model(path)


def test_missing_file_says_so(tmp_path):
    with pytest.raises(ModelLoadError, match="not found"):
        load_model(tmp_path / "missing.xml")
