"""Registry: artifacts with manifests, lineage both ways, references, deletion rules, model versions and aliases."""

from __future__ import annotations

import json

import pytest

from embodia.core.errors import UserError
from embodia.core.stage import StageResult, run_stage
from embodia.platform import registry


def _stage(tmp_path, name, kind, payload, inputs=None, stage="generate"):
    """A real stage output made by core's run_stage."""
    def body(staging, reporter):
        (staging / "data.txt").write_text(payload)
        return StageResult(seeds=[0], summary={"n": len(payload)})
    run_stage(stage, kind, {"task": "arm-reach", "payload": payload}, tmp_path / name, body, inputs=inputs)
    return tmp_path / name


def _chain(store, tmp_path):
    """dataset -> checkpoint -> model, plus a report of the model; returns their artifacts."""
    data = registry.register_artifact(store, _stage(tmp_path, "data", "dataset", "episodes"), tags=["raw"])
    ckpt_dir = _stage(tmp_path, "ckpt", "checkpoint", "weights", {"dataset": tmp_path / "data"}, "train")
    ckpt = registry.register_artifact(store, ckpt_dir, job_id=7)
    model = registry.register_artifact(store, _stage(tmp_path, "model", "model", "onnx", {"checkpoint": ckpt_dir},
                                                     "export"))
    report = registry.register_artifact(store, _stage(tmp_path, "report", "report", "85%",
                                                      {"model": tmp_path / "model"}, "evaluate"))
    return data, ckpt, model, report


def test_register_records_the_manifest_and_is_idempotent(store, tmp_path):
    out = _stage(tmp_path, "data", "dataset", "episodes")
    info = registry.register_artifact(store, out, tags=["raw"], job_id=3)
    assert info.kind == "dataset" and info.stage == "generate" and info.creator_job_id == 3
    assert info.manifest["config"]["task"] == "arm-reach" and info.size == len("episodes")
    assert (info.path / "data.txt").read_text() == "episodes" and (info.path / "manifest.json").is_file()
    again = registry.register_artifact(store, out, tags=["again"])
    assert again.id == info.id and again.tags == ["again", "raw"] and again.creator_job_id == 3
    assert len(registry.list_artifacts(store)) == 1
    assert registry.list_artifacts(store, tag="raw")[0].sha256 == info.sha256
    assert registry.list_artifacts(store, kind="model") == []


def test_changed_or_unfinished_outputs_are_refused(store, tmp_path):
    out = _stage(tmp_path, "data", "dataset", "episodes")
    (out / "data.txt").write_text("tampered")
    with pytest.raises(UserError, match="differ from its manifest"):
        registry.register_artifact(store, out)
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "f").write_text("x")
    with pytest.raises(UserError, match="pass kind="):
        registry.register_artifact(store, tmp_path / "plain")
    imported = registry.register_artifact(store, tmp_path / "plain", kind="other")
    assert imported.stage == "import" and not (tmp_path / "plain" / "manifest.json").exists()
    assert (imported.path / "manifest.json").is_file()


def test_references_resolve_by_prefix_kind_and_model(store, tmp_path):
    data, ckpt, model, _ = _chain(store, tmp_path)
    assert registry.resolve(store, f"sha256:{data.sha256[:8]}").id == data.id
    assert registry.resolve(store, f"dataset:sha256:{data.sha256[:8]}").id == data.id
    assert registry.resolve(store, data.sha256).id == data.id
    with pytest.raises(UserError, match="no model artifact"):
        registry.resolve(store, f"model:sha256:{data.sha256[:8]}")
    with pytest.raises(UserError, match="at least 4"):
        registry.resolve(store, "sha256:ab")
    with pytest.raises(UserError, match="not understood"):
        registry.resolve(store, "pick@production")
    registry.register_model_version(store, "pick", model.ref)
    assert registry.resolve(store, "model:pick@v1").sha256 == model.sha256
    assert registry.resolve(store, "model:pick").sha256 == model.sha256
    with pytest.raises(UserError, match="model:pick@production does not exist"):
        registry.resolve(store, "model:pick@production")
    with pytest.raises(UserError, match="no model 'other'"):
        registry.resolve(store, "model:other@v1")


def test_lineage_goes_both_ways(store, tmp_path):
    data, ckpt, model, report = _chain(store, tmp_path)
    registry.register_model_version(store, "pick", model.ref)
    registry.set_alias(store, "pick", "production", 1, why="first")
    up = registry.ancestors(store, report.ref)
    assert [up.sha256, up.children[0].sha256, up.children[0].children[0].sha256,
            up.children[0].children[0].children[0].sha256] == [report.sha256, model.sha256, ckpt.sha256, data.sha256]
    assert up.children[0].models == ["model:pick@v1 (production)"]
    assert up.children[0].children[0].children[0].edge_name == "dataset"
    down = registry.descendants(store, f"dataset:sha256:{data.sha256[:10]}")
    assert down.children[0].sha256 == ckpt.sha256
    assert down.children[0].children[0].children[0].artifact.kind == "report"
    graph = registry.lineage(store, ckpt.ref)
    json.dumps(graph)
    assert graph["ancestors"]["next"][0]["config"]["task"] == "arm-reach"
    assert graph["descendants"]["next"][0]["kind"] == "model"


def test_deleting_what_others_derive_from_is_refused_unless_forced(store, tmp_path):
    data, ckpt, model, report = _chain(store, tmp_path)
    registry.register_model_version(store, "pick", model.ref)
    with pytest.raises(UserError, match="is used by checkpoint:sha256"):
        registry.delete_artifact(store, data.ref)
    with pytest.raises(UserError, match="model:pick@v1"):
        registry.delete_artifact(store, model.ref)
    registry.delete_artifact(store, report.ref)  # a leaf goes
    assert not store.artifacts.exists(report.sha256)
    registry.delete_artifact(store, data.ref, force=True)
    orphan = registry.ancestors(store, ckpt.ref).children[0]
    assert orphan.artifact is None and orphan.sha256 == data.sha256
    registry.delete_artifact(store, model.ref, force=True)
    assert registry.list_model_versions(store) == []


def test_model_versions_aliases_and_their_history(store, tmp_path):
    _, _, model, report = _chain(store, tmp_path)
    other = registry.register_artifact(store, _stage(tmp_path, "model2", "model", "onnx v2"))
    v1 = registry.register_model_version(store, "pick", model.ref, who="ann")
    assert registry.register_model_version(store, "pick", model.ref).version == 1  # same artifact, same version
    v2 = registry.register_model_version(store, "pick", other.ref, report=report.ref,
                                         gate={"verdict": "pass", "vs": "production"})
    assert (v1.version, v2.version, v2.report_sha256, v2.gate["verdict"]) == (1, 2, report.sha256, "pass")
    registry.set_alias(store, "pick", "production", "v1", who="ann", why="first release")
    moved = registry.set_alias(store, "pick", "production", 2, who="bob", why="gate passed")
    assert moved.aliases == ["production"] and registry.resolve(store, "model:pick@production").sha256 == other.sha256
    registry.set_alias(store, "pick", "staging", "latest")
    history = registry.alias_history(store, "pick", "production")
    assert [(e.from_version, e.to_version, e.who, e.why) for e in history] == [
        (None, 1, "ann", "first release"), (1, 2, "bob", "gate passed")]
    registry.remove_alias(store, "pick", "staging", why="done")
    assert registry.get_model_version(store, "pick", 2).aliases == ["production"]
    updated = registry.attach_evaluation(store, "pick", 1, report=report.ref, gate={"verdict": "fail"})
    assert updated.report_sha256 == report.sha256 and updated.gate == {"verdict": "fail"}
    with pytest.raises(UserError, match="reserved"):
        registry.set_alias(store, "pick", "v3", 1)
    with pytest.raises(UserError, match="model name"):
        registry.register_model_version(store, "bad name", model.ref)


def test_cache_key_lookup_finds_a_stored_artifact(store, tmp_path):
    info = registry.register_artifact(store, _stage(tmp_path, "data", "dataset", "e"), cache_key="k1")
    assert registry.find_by_cache_key(store, "k1").sha256 == info.sha256
    assert registry.find_by_cache_key(store, "k2") is None
    store.artifacts.delete(info.sha256)
    assert registry.find_by_cache_key(store, "k1") is None


def test_derived_artifacts_inherit_the_jurisdiction_of_their_inputs(store, tmp_path):
    data = registry.register_artifact(store, _stage(tmp_path, "data", "dataset", "episodes"), jurisdiction="br")
    assert data.jurisdiction == "BR" and data.jurisdictions == {"BR"}
    other = registry.register_artifact(store, _stage(tmp_path, "eu", "dataset", "eu-episodes"), jurisdiction="EU")
    ckpt_dir = _stage(tmp_path, "ckpt", "checkpoint", "weights", {"dataset": tmp_path / "data", "extra": tmp_path / "eu"},
                      "train")
    ckpt = registry.register_artifact(store, ckpt_dir)
    assert ckpt.jurisdiction == "BR,EU"  # bound by both sources' rules
    model = registry.register_artifact(store, _stage(tmp_path, "model", "model", "onnx", {"checkpoint": ckpt_dir},
                                                     "export"))
    assert model.jurisdictions == {"BR", "EU"}
    free = registry.register_artifact(store, _stage(tmp_path, "free", "dataset", "open"))
    assert free.jurisdiction is None and other.jurisdiction == "EU"
    with pytest.raises(UserError, match="jurisdiction 'B R'"):
        registry.register_artifact(store, _stage(tmp_path, "bad", "dataset", "x"), jurisdiction="B R")


def test_tagging_a_source_later_tags_everything_derived_from_it(store, tmp_path):
    data, ckpt, model, report = _chain(store, tmp_path)
    assert ckpt.jurisdiction is None
    registry.set_jurisdiction(store, data.ref, "KR")
    for info in (data, ckpt, model, report):
        assert registry.get_artifact(store, info.sha256).jurisdiction == "KR"
    assert registry.lineage(store, model.ref)["ancestors"]["jurisdiction"] == "KR"
    registry.set_jurisdiction(store, model.ref, "JP")
    assert registry.get_artifact(store, report.sha256).jurisdiction == "JP,KR"
    assert registry.get_artifact(store, data.sha256).jurisdiction == "KR"
