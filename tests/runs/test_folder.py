"""RunFolder: identity, resume, refusal of another run or release, the lock, codecs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from eigencam.errors import EigenCAMError, OutputError, RunMismatchError
from eigencam.runs.folder import RUN_FORMAT, RunExistsError, RunFolder


def test_a_new_folder_is_stamped_and_parts_are_numbered(tmp_path):
    folder = RunFolder(tmp_path / "run", {"model": "m"}, command="explain").open(resume=False)
    stamp = json.loads((tmp_path / "run" / "run.json").read_text())
    assert stamp["run_format"] == RUN_FORMAT and stamp["command"] == "explain"
    assert stamp["model"] == "m" and stamp["eigencam"]
    folder.write({"rows": [{"key": "a"}], "failures": [{"key": "b", "error": "x"}]})
    folder.write({"rows": [{"key": "c"}], "failures": []})
    assert [p.name for p in folder.parts()] == ["part-000000.json", "part-000001.json"]
    assert folder.done_keys() == {"a", "b", "c"}
    folder.close()


def test_resume_refuses_other_settings_and_a_second_run_without_resume(tmp_path):
    RunFolder(tmp_path, {"model": "m"}, command="attack").open(resume=False).close()
    with pytest.raises(RunExistsError, match="--resume"):
        RunFolder(tmp_path, {"model": "m"}, command="attack").open(resume=False)
    with pytest.raises(RunMismatchError, match="model: was 'm', now 'n'"):
        RunFolder(tmp_path, {"model": "n"}, command="attack").open(resume=True)
    folder = RunFolder(tmp_path, {"model": "m"}, command="attack").open(resume=True)
    folder.close()
    again = RunFolder(tmp_path, {"model": "n"}, command="attack").open(resume=False, overwrite=True)
    assert json.loads((tmp_path / "run.json").read_text())["model"] == "n"
    again.close()


def test_a_folder_of_the_previous_release_is_refused_naming_it(tmp_path):
    # what eigencam 0.1.0 wrote: the identity alone, no run format
    (tmp_path / "run.json").write_text(json.dumps({"command": "attack", "model": "m"}))
    (tmp_path / "records").mkdir()
    (tmp_path / "records" / "part-000000.json").write_text('{"rows": [], "failures": []}')
    with pytest.raises(RunMismatchError, match=r"eigencam 0\.1\.x \(run format 1\)"):
        RunFolder(tmp_path, {"model": "m"}, command="attack").open(resume=True)


def test_two_runs_cannot_write_into_one_folder_at_once(tmp_path):
    first = RunFolder(tmp_path, {}, command="explain").open(resume=False)
    with pytest.raises(RunExistsError, match="another eigencam run is writing"):
        RunFolder(tmp_path, {}, command="explain").open(resume=True)
    first.close()
    RunFolder(tmp_path, {}, command="explain").open(resume=True).close()


def test_an_unwritable_folder_is_an_output_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="cannot write the output folder"):
        RunFolder(blocker / "out", {}, command="explain").open(resume=False)


def test_npz_parts_record_evaluated_and_skipped_keys(tmp_path):
    folder = RunFolder(tmp_path, {}, command="localize", codec="npz").open(resume=False)
    folder.write({"keys": np.array(["a", "b"]), "skipped_keys": np.array(["c"])})
    assert folder.done_keys() == {"a", "b", "c"}
    assert folder.read()[0]["keys"].tolist() == ["a", "b"]
    folder.close()


def test_json_records_later_parts_win_and_an_unreadable_part_is_named(tmp_path):
    ident = {"methods": ["eigencam"], "settings": {"k": 1}}
    RunFolder(tmp_path / "r", ident, command="attack").open(resume=False).close()
    with pytest.raises(ValueError, match="settings"):
        RunFolder(tmp_path / "r", {**ident, "settings": {"k": 2}}, command="attack").open(
            resume=True
        )
    folder = RunFolder(tmp_path / "r", ident, command="attack").open(resume=True)
    folder.write({"rows": [{"key": "a", "v": 1}], "failures": [{"key": "b", "error": "x"}]})
    folder.write({"rows": [{"key": "b", "v": 2}, {"key": "a", "v": 3}], "failures": []})
    rec = folder.records()
    assert [(r["key"], r["v"]) for r in rec.rows] == [("a", 3), ("b", 2)]  # later parts win
    assert rec.failures == [] and rec.keys() == {"a", "b"}
    assert rec.restrict({"b"}).keys() == {"b"}
    (folder.records_dir / "part-000002.json").write_text("{broken")
    with pytest.raises(EigenCAMError, match="unreadable"):
        folder.records()
    folder.close()


def test_the_run_file_is_plain_json(tmp_path):
    RunFolder(tmp_path, {"x": (1, 2)}, command="faithfulness").open(resume=False).close()
    assert json.loads((tmp_path / "run.json").read_text())["x"] == [1, 2]
