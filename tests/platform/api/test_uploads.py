"""Dataset uploads through the API: safe unpacking (no traversal, no links, bounded), checked, project-scoped."""

from __future__ import annotations

import io
import tarfile
import zipfile

import numpy as np
import pytest
from fastapi.testclient import TestClient

from embodia.core.errors import UserError
from embodia.platform.api.app import create_app
from embodia.platform.api.auth import create_token
from embodia.platform.api.uploads import extract_archive



def _tar(entries) -> bytes:
    """A tar of (name, bytes | None for a symlink to /etc/passwd)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
                archive.addfile(info)
            else:
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _dataset_tar(tmp_path) -> bytes:
    from embodia.data import format as fmt
    from embodia.data.writer import DatasetSpec, Episode, write_dataset

    root, rng = tmp_path / "ds", np.random.default_rng(0)
    spec = DatasetSpec(fps=20, robot_type="arm", features={"observation.state": fmt.vector_feature("float32", 4),
                                                           "action": fmt.vector_feature("float32", 2)})
    episodes = [Episode(frames={"observation.state": rng.normal(size=(10, 4)).astype(np.float32),
                                "action": rng.uniform(-1, 1, (10, 2)).astype(np.float32)}, task="reach")
                for _ in range(2)]
    write_dataset(root, spec, episodes)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        archive.add(root, arcname="ds")
    return buffer.getvalue()


@pytest.mark.parametrize("entries", [[("../evil", b"x")], [("/abs", b"x")], [("a/../../evil", b"x")],
                                     [("link", None)]])
def test_unsafe_tar_members_are_refused(tmp_path, entries):
    dest = tmp_path / "out"
    with pytest.raises(UserError, match="archive member"):
        extract_archive(_tar(entries), dest)
    assert not (tmp_path / "evil").exists() and not (dest / "link").exists()


def test_zip_and_limits(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("top/a.txt", b"hello")
    link = zipfile.ZipInfo("top/link")
    link.external_attr = (0o120777) << 16
    linked = io.BytesIO()
    with zipfile.ZipFile(linked, "w") as archive:
        archive.writestr(link, "/etc/passwd")
    with pytest.raises(UserError, match="link"):
        extract_archive(linked.getvalue(), tmp_path / "link")
    root = extract_archive(buffer.getvalue(), tmp_path / "ok")
    assert (root / "a.txt").read_bytes() == b"hello"
    with pytest.raises(UserError, match="more than"):
        extract_archive(_tar([("a", b"1"), ("b", b"2")]), tmp_path / "many", max_files=1)
    with pytest.raises(UserError, match="not a readable"):
        extract_archive(b"not an archive", tmp_path / "bad")


def test_upload_dataset_checked_and_scoped(sqlite_store, tmp_path):
    client = TestClient(create_app(sqlite_store), raise_server_exceptions=False)
    run = {"Authorization": f"Bearer {create_token(sqlite_store, 'alpha', 'run')}"}
    read = {"Authorization": f"Bearer {create_token(sqlite_store, 'alpha', 'read')}"}
    other = {"Authorization": f"Bearer {create_token(sqlite_store, 'beta', 'admin')}"}
    body = _dataset_tar(tmp_path)
    assert client.post("/api/v1/artifacts/datasets", content=body, headers=read).status_code == 403
    made = client.post("/api/v1/artifacts/datasets?name=demo", content=body, headers=run)
    assert made.status_code == 201, made.text
    sha = made.json()["sha256"]
    assert made.json()["kind"] == "dataset"
    assert client.get(f"/api/v1/artifacts/{sha}", headers=read).status_code == 200
    assert client.get(f"/api/v1/artifacts/{sha}", headers=other).status_code == 404
    assert client.get("/api/v1/artifacts", headers=other).json() == []
    broken = client.post("/api/v1/artifacts/datasets", content=_tar([("ds/meta/info.json", b"{}")]), headers=run)
    assert broken.status_code == 400 and "error" in broken.json()
    evil = client.post("/api/v1/artifacts/datasets", content=_tar([("../x", b"1")]), headers=run)
    assert evil.status_code == 400 and "relative path" in evil.json()["error"]


ROBOT = b"""<mujoco><worldbody><body name="b"><joint name="j" type="hinge"/><geom type="sphere" size="0.1"/>
</body></worldbody><actuator><motor joint="j"/></actuator></mujoco>"""


def test_upload_robot_compiles_in_a_child_and_refuses_outside_references(sqlite_store):
    client = TestClient(create_app(sqlite_store), raise_server_exceptions=False)
    run = {"Authorization": f"Bearer {create_token(sqlite_store, 'alpha', 'run')}"}
    other = {"Authorization": f"Bearer {create_token(sqlite_store, 'beta', 'read')}"}
    made = client.post("/api/v1/artifacts/robots?name=bot", content=_tar([("bot/robot.xml", ROBOT)]), headers=run)
    assert made.status_code == 201, made.text
    assert made.json()["kind"] == "robot"
    assert client.get(f"/api/v1/artifacts/{made.json()['sha256']}", headers=other).status_code == 404
    broken = client.post("/api/v1/artifacts/robots", content=_tar([("r.xml", b"<mujoco><worldbody><geom/>")]),
                         headers=run)
    assert broken.status_code == 400 and "XML" in broken.json()["error"]
    invalid = client.post("/api/v1/artifacts/robots", content=_tar([("r.xml", b"<mujoco><nonsense/></mujoco>")]),
                          headers=run)
    assert invalid.status_code == 400 and "cannot load model" in invalid.json()["error"]
    outside = b'<mujoco><asset><mesh file="/etc/passwd"/></asset></mujoco>'
    escaped = client.post("/api/v1/artifacts/robots", content=_tar([("r.xml", outside)]), headers=run)
    assert escaped.status_code == 400 and "outside" in escaped.json()["error"]
