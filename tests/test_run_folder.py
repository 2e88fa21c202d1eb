"""The run folder as a typed contract: members.json parsed once, with defaults for old folders."""
import json
from pathlib import Path

import pytest

from earmark.config import load_recipe
from earmark.errors import RunError
from earmark.run import MemberEntry, RunFolder, RunInfo


def _folder(tmp_path: Path, members: object) -> RunFolder:
    run = RunFolder(tmp_path / "run")
    run.path.mkdir(parents=True)
    (run.path / "config.yaml").write_text(load_recipe("default", ["ensemble.voting=hard"]).to_yaml())
    (run.path / "members.json").write_text(json.dumps(members))
    return run


def test_old_members_json_without_fields_gets_defaults(tmp_path: Path):
    run = _folder(tmp_path, {"members": [{"dir": "folds/holdout/members/0"}, {"dir": "m1", "weight": 2}]})
    first, second = run.members()
    assert first == MemberEntry("folds/holdout/members/0", kind="net", model=None, fold=None, seed=None,
                                val_score=None, weight=1.0)
    assert second.weight == 2.0 and isinstance(second.weight, float)
    assert run.voting() == "hard"  # no "voting" key: the recipe's ensemble.voting


def test_the_oldest_layout_a_bare_list_loads(tmp_path: Path):
    run = _folder(tmp_path, [{"dir": "m0", "kind": "classical", "unknown_key": 1}])
    assert run.members() == [MemberEntry("m0", kind="classical")]


def test_members_json_is_read_once_and_written_in_the_documented_format(tmp_path: Path):
    run = _folder(tmp_path, {"voting": "soft", "members": [{"dir": "m0"}]})
    assert len(run.members()) == 1
    (run.path / "members.json").write_text("not json")  # a second read would fail
    assert run.members()[0].dir == "m0" and run.voting() == "soft"
    entries = [MemberEntry("folds/1/members/0", "net", "cnn", "1", 0, 0.9, 0.9)]
    run.write_members("hard", entries)
    data = json.loads((run.path / "members.json").read_text())
    assert data == {"voting": "hard", "members": [{"dir": "folds/1/members/0", "kind": "net", "model": "cnn",
                                                   "fold": "1", "seed": 0, "val_score": 0.9, "weight": 0.9}]}
    assert RunFolder(run.path).members() == entries


def test_a_damaged_members_json_is_a_run_error(tmp_path: Path):
    with pytest.raises(RunError, match="not a list of members"):
        _folder(tmp_path, {"voting": "soft"}).members()
    with pytest.raises(RunError, match="unknown voting"):
        RunFolder(_folder(tmp_path / "b", {"voting": "majority", "members": []}).path).voting()


def test_run_info_keeps_unknown_keys(tmp_path: Path):
    run = RunFolder(tmp_path)
    run.write_info(status="complete", folds=["1", "2"], labels=["a", "b"], attempts=2, wall_seconds=3.5)
    info = run.run_info()
    assert isinstance(info, RunInfo)
    assert (info.status, info.folds, info.labels, info.attempts) == ("complete", ("1", "2"), ("a", "b"), 2)
    assert info.extra == {"wall_seconds": 3.5}
    assert RunFolder(tmp_path / "none").run_info().status == "unknown"


def test_digest_follows_what_the_run_predicts_with(tmp_path: Path):
    run = _folder(tmp_path, {"voting": "soft", "members": [{"dir": "m0"}]})
    (run.path / "labels.json").write_text('["a", "b"]')
    (run.path / "m0").mkdir()
    (run.path / "m0" / "model.safetensors").write_bytes(b"weights")
    before = run.digest()
    assert before == RunFolder(run.path).digest()
    (run.path / "m0" / "model.safetensors").write_bytes(b"other weights")
    assert RunFolder(run.path).digest() != before


def test_a_folder_whose_attempt_failed_before_training_is_reused(tmp_path: Path):
    run = RunFolder(tmp_path / "run")
    run.start(load_recipe("default", ["train.epochs=2"]), "data")
    (run.path / "folds" / "1" / "members" / "0" / "checkpoints").mkdir(parents=True)  # a fit that never ended
    run.start(load_recipe("default", ["train.epochs=3"]), "data")  # other settings: accepted
    assert run.recipe().train.epochs == 3 and not (run.path / "folds").exists()
    member = run.path / "folds" / "1" / "members" / "0"
    member.mkdir(parents=True)
    (member / "member.json").write_text("{}")  # now a member finished: the run is protected
    with pytest.raises(RunError, match="different settings.*failed before any member finished"):
        run.start(load_recipe("default", ["train.epochs=4"]), "data")


def test_a_predictor_reads_members_json_once(trained_run: Path, monkeypatch: pytest.MonkeyPatch):
    import earmark
    import earmark.run

    reads: list[str] = []
    real = earmark.run.read_json

    def counting(path):  # noqa: ANN001, ANN202
        reads.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(earmark.run, "read_json", counting)
    predictor = earmark.Predictor(trained_run)
    assert reads.count("members.json") == 1
    assert len(predictor.members) == len(predictor.weights) == 1
