"""Content-addressed artifact store on the local filesystem."""

from __future__ import annotations

import pytest

from embodia.core.errors import UserError
from embodia.core.manifest import hash_tree
from embodia.platform.artifacts import ArtifactStore, LocalArtifactStore


def _tree(root, text="a"):
    (root / "sub").mkdir(parents=True)
    (root / "x.txt").write_text(text)
    (root / "sub" / "y.bin").write_bytes(b"\x00\x01")
    return root


def test_put_stores_a_tree_under_its_content_hash_once(tmp_path):
    store = LocalArtifactStore(tmp_path / "store")
    assert isinstance(store, ArtifactStore)
    source = _tree(tmp_path / "src")
    sha = store.put(source)
    assert sha == hash_tree(source)
    assert store.exists(sha) and store.list() == [sha]
    assert (store.path(sha) / "sub" / "y.bin").read_bytes() == b"\x00\x01"
    assert source.is_dir()  # copied, not moved
    assert store.put(_tree(tmp_path / "again")) == sha  # equal content: deduplicated
    assert store.list() == [sha]
    assert not [p for p in (tmp_path / "store").rglob(".*")]  # no staging left behind


def test_move_renames_the_source_in_and_a_duplicate_source_is_consumed(tmp_path):
    store = LocalArtifactStore(tmp_path / "store")
    sha = store.put(_tree(tmp_path / "a"), move=True)
    assert not (tmp_path / "a").exists()
    assert store.put(_tree(tmp_path / "b"), move=True) == sha
    assert not (tmp_path / "b").exists() and store.list() == [sha]


def test_single_file_open_and_delete(tmp_path):
    store = LocalArtifactStore(tmp_path / "store")
    (tmp_path / "policy.onnx").write_bytes(b"onnx")
    sha = store.put(tmp_path / "policy.onnx")
    with store.open(sha) as handle:
        assert handle.read() == b"onnx"
    with pytest.raises(UserError, match="no file"):
        store.open(sha, "../../etc/passwd")
    assert store.delete(sha) and not store.exists(sha)
    assert not store.delete(sha)
    with pytest.raises(UserError, match="not in the store"):
        store.path(sha)


def test_bad_hashes_and_missing_sources_are_user_errors(tmp_path):
    store = LocalArtifactStore(tmp_path / "store")
    with pytest.raises(UserError, match="not a sha256"):
        store.exists("../etc")
    with pytest.raises(UserError, match="does not exist"):
        store.put(tmp_path / "nope")
