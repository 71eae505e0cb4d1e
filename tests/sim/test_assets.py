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


OBJ_TETRAHEDRON = "v 0 0 0\nv 0.1 0 0\nv 0 0.1 0\nv 0 0 0.1\nf 1 3 2\nf 1 2 4\nf 1 4 3\nf 2 3 4\n"
WITH_INCLUDE = """<mujoco><compiler meshdir="meshes"/><asset><mesh name="tet" file="tet.obj"/></asset>
  <include file="parts.xml"/></mujoco>"""
PARTS = '<mujoco><worldbody><body name="b"><freejoint/><geom type="mesh" mesh="tet"/></body></worldbody></mujoco>'


def _model_dir(tmp_path):
    (tmp_path / "meshes").mkdir()
    (tmp_path / "meshes" / "tet.obj").write_text(OBJ_TETRAHEDRON)
    (tmp_path / "parts.xml").write_text(PARTS)
    return tmp_path


def test_string_with_includes_and_meshes_loads_from_base_dir(tmp_path, monkeypatch):
    (tmp_path / "robot").mkdir()
    base = _model_dir(tmp_path / "robot")
    monkeypatch.chdir(tmp_path)  # the string's relative files are not in the current directory
    with pytest.raises(ModelLoadError, match="parts.xml.*base_dir="):
        load_model(WITH_INCLUDE)
    model = load_model(WITH_INCLUDE, base_dir=base)
    assert model.nmesh == 1 and model.nbody == 2


def test_string_with_in_memory_assets():
    assets = {"parts.xml": PARTS.encode(), "meshes/tet.obj": OBJ_TETRAHEDRON.encode()}
    assert load_model(WITH_INCLUDE, assets=assets).nmesh == 1


URDF = """<robot name="twolink">
  <link name="base"><inertial><mass value="1"/><inertia ixx="0.01" iyy="0.01" izz="0.01" ixy="0" ixz="0" iyz="0"/></inertial>
    <collision><geometry><box size="0.1 0.1 0.1"/></geometry></collision></link>
  <link name="upper"><inertial><origin xyz="0 0 0.2"/><mass value="0.5"/>
      <inertia ixx="0.01" iyy="0.01" izz="0.01" ixy="0" ixz="0" iyz="0"/></inertial>
    <collision><origin xyz="0 0 0.2"/><geometry><cylinder radius="0.03" length="0.4"/></geometry></collision></link>
  <joint name="shoulder" type="revolute"><parent link="base"/><child link="upper"/><origin xyz="0 0 0.05"/>
    <axis xyz="0 1 0"/><limit lower="-1.5" upper="1.5" effort="5" velocity="3"/></joint>
</robot>"""


@pytest.mark.parametrize("actuators, ctrlrange", [("position", [-1.5, 1.5]), ("motor", [-5.0, 5.0])])
def test_urdf_gets_actuators_floor_and_camera_and_steps_and_renders(tmp_path, actuators, ctrlrange):
    import numpy as np

    from embodia.sim import BatchRenderer, BatchSim, from_urdf
    from embodia.sim.batch import episode_rngs

    path = tmp_path / "arm.urdf"
    path.write_text(URDF)
    model = from_urdf(path, actuators=actuators)
    assert model.nu == 1 and model.actuator_ctrlrange[0].tolist() == ctrlrange
    assert model.camera("front").id == 0 and model.geom("floor").id >= 0
    sim = BatchSim(model, 2, frame_skip=10)
    sim.reset(np.arange(2), episode_rngs(np.array([0, 1])))
    for _ in range(20):
        sim.step(np.array([[1.0], [-1.0]]))
    assert sim.qpos[0, 0] > 0.05 and sim.qpos[1, 0] < -0.05  # the actuator moves the joint both ways
    renderer = BatchRenderer(sim, width=32, height=32)
    frames = renderer.render(np.arange(2), camera="front")
    renderer.close()
    assert frames.shape == (2, 32, 32, 3) and frames.std() > 0


def test_urdf_path_through_load_model_and_sim_inspect(tmp_path):
    from typer.testing import CliRunner

    from embodia.cli import app

    path = tmp_path / "arm.urdf"
    path.write_text(URDF)
    assert load_model(path).nu == 1
    result = CliRunner().invoke(app, ["sim", "inspect", str(path)])
    assert result.exit_code == 0, result.output
    for text in ("shoulder_pos", "[-1.5, 1.5]", "front", "upper"):
        assert text in result.output


def test_sim_video_of_a_bare_model_with_zero_actions(tmp_path):
    from typer.testing import CliRunner

    from embodia.cli import app

    path = tmp_path / "arm.urdf"
    path.write_text(URDF)
    out = tmp_path / "arm.mp4"
    result = CliRunner().invoke(app, ["sim", "video", "--model", str(path), "--actions", "zero", "--out", str(out),
                                      "--steps", "3", "--width", "32", "--height", "32"])
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 0
