"""``eigencam batch`` with the local engine: input kinds, rows, failures, resume, manifest, CLI.

The Ray engine is compared with this one in test_batch_ray.py.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from batch_helpers import (
    FAST,
    REPO,
    SLOW,
    TINY,
    make_folder,
    write_parquet_bytes,
    write_parquet_paths,
    write_tars,
)
from eigencam.batch import BatchSpec, decode_maps, plan_inputs, read_results, run_batch
from eigencam.batch.inputs import expand_braces, read_shard
from eigencam.batch.shards import shard_files
from eigencam.batch.worker import DEFAULT_THRESHOLD
from eigencam.cli.main import main
from eigencam.errors import BatchInputError, RunMismatchError

pytestmark = pytest.mark.filterwarnings("ignore::eigencam.models.RandomWeightsWarning")
SPEC = BatchSpec(model=TINY, **FAST)
VALUE_COLUMNS = [
    "status",
    "width",
    "height",
    "top5_index",
    "top5_prob",
    "explained_variance",
    "box",
    "map",
    "map_shape",
    "layer",
]


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    return make_folder(tmp_path_factory.mktemp("imgs") / "imgs", n=10, corrupt=True)


@pytest.fixture(scope="module")
def folder_run(images, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "out"
    report = run_batch([str(images[0].parent)], out, SPEC, shard_size=4)
    return out, report


def tables(out) -> list[pa.Table]:
    return [pq.read_table(f) for f in shard_files(out)]


# -- planning ------------------------------------------------------------------------------


def test_plan_folder_is_sorted_and_sharded(images):
    plan = plan_inputs([str(images[0].parent)], shard_size=4)
    assert plan.kind == "images" and plan.items == 11
    assert [s.size for s in plan.shards] == [4, 4, 3]
    ids = [i for s in plan.shards for i, _ in s.items]
    assert ids == sorted(ids) and ids[-1].endswith("zz-corrupt.jpg")
    assert all(Path(p).is_absolute() for s in plan.shards for _, p in s.items)
    # Deterministic: the same input gives the same fingerprint, another shard size another one.
    assert plan.fingerprint() == plan_inputs([str(images[0].parent)], shard_size=4).fingerprint()
    assert plan.fingerprint() != plan_inputs([str(images[0].parent)], shard_size=5).fingerprint()


def test_plan_glob_list_and_errors(images, tmp_path):
    folder = images[0].parent
    plan = plan_inputs([str(folder / "*.jpg"), str(tmp_path / "none-*.png")])
    assert plan.items == 4 and plan.unmatched[0][1] == "pattern matched no files"
    listing = tmp_path / "paths.txt"
    rel = os.path.relpath(images[1], tmp_path)
    listing.write_text(f"# a comment\n{images[0]}\n\n{rel}\nmissing.png\n")
    plan = plan_inputs([str(listing)])
    assert plan.kind == "list"
    assert [i for i, _ in plan.shards[0].items] == [str(images[0]), rel, "missing.png"]
    data = read_shard(plan.shards[0])
    assert data.errors == [None, None, "no such file"]
    assert data.data[1] == images[1].read_bytes()
    with pytest.raises(BatchInputError, match="cannot mix input kinds"):
        plan_inputs([str(images[0]), str(listing)])
    with pytest.raises(BatchInputError, match="no images"):
        plan_inputs([str(tmp_path / "nothing-*.png")])
    with pytest.raises(BatchInputError, match="shard_size"):
        plan_inputs([str(folder)], shard_size=0)


def test_plan_parquet_columns(images, tmp_path):
    pq_bytes = write_parquet_bytes(tmp_path / "b.parquet", images, row_group_size=3)
    plan = plan_inputs([str(pq_bytes)], shard_size=4)
    assert (plan.kind, plan.column, plan.column_type) == ("parquet", "image", "bytes")
    assert [s.rows for s in plan.shards] == [(0, 4), (4, 8), (8, 11)]
    data = read_shard(plan.shards[1])  # rows 4..7 span row groups 1 and 2
    assert data.ids == ["b.parquet#4", "b.parquet#5", "b.parquet#6", "b.parquet#7"]
    assert data.data == [p.read_bytes() for p in images[4:8]]
    keyed = plan_inputs([str(pq_bytes)], shard_size=4, id_column="key")
    assert read_shard(keyed.shards[2]).ids == [p.stem for p in images[8:]]
    with pytest.raises(BatchInputError, match="no column 'nope'"):
        plan_inputs([str(pq_bytes)], column="nope")
    with pytest.raises(BatchInputError, match="has type int64"):
        plan_inputs([str(pq_bytes)], column="label")
    # A column of paths, relative to the Parquet file's folder, becomes a list of files.
    pq_paths = write_parquet_paths(images[0].parent / "paths.parquet", images[:3])
    plan = plan_inputs([str(pq_paths)])
    assert plan.column_type == "path" and plan.shards[0].kind == "files"
    assert read_shard(plan.shards[0]).data == [p.read_bytes() for p in images[:3]]
    pq_paths.unlink()


def test_plan_hugging_face_image_struct(images, tmp_path):
    structs = pa.array(
        [{"bytes": p.read_bytes(), "path": p.name} for p in images[:2]]
        + [{"bytes": None, "path": str(images[2])}],
        pa.struct([("bytes", pa.binary()), ("path", pa.string())]),
    )
    path = tmp_path / "hf.parquet"
    pq.write_table(pa.table({"image": structs}), path)
    plan = plan_inputs([str(path)])
    assert plan.column_type == "struct"
    assert read_shard(plan.shards[0]).data == [p.read_bytes() for p in images[:3]]


def test_plan_webdataset(images, tmp_path):
    tars = write_tars(tmp_path / "wds", images, per_tar=4)
    assert expand_braces(str(tmp_path / "wds" / "shard-{000..002}.tar")) == list(map(str, tars))
    plan = plan_inputs([str(tmp_path / "wds" / "shard-{000..002}.tar")])
    assert plan.kind == "webdataset" and len(plan.shards) == 3 and plan.items is None
    data = read_shard(plan.shards[0])
    assert data.ids == [p.stem for p in images[:4]]
    assert data.data == [p.read_bytes() for p in images[:4]]
    # A sample without an image member, and a tar cut in the middle of a member.
    import webdataset as wds

    odd = tmp_path / "odd.tar"
    with wds.TarWriter(str(odd)) as sink:
        sink.write({"__key__": "a", "png": images[0].read_bytes()})
        sink.write({"__key__": "b", "txt": b"no image here"})
        sink.write({"__key__": "c", "png": images[1].read_bytes()})
    data = read_shard(plan_inputs([str(odd)]).shards[0])
    assert data.ids == ["a", "b", "c"]
    assert data.errors[1].startswith("sample has no image (jpg, jpeg, png")
    assert data.errors[1].endswith("member; it has txt")
    with tarfile.open(odd) as tf:
        last = tf.getmember("c.png")
    cut = tmp_path / "cut.tar"
    cut.write_bytes(odd.read_bytes()[: last.offset_data + last.size // 2])
    data = read_shard(plan_inputs([str(cut)]).shards[0])
    assert data.ids == ["a", "b", "cut.tar#rest"] and data.errors[0] is None
    assert "tar file unreadable after 2 samples" in data.errors[-1]


# -- rows ----------------------------------------------------------------------------------


def test_rows_match_an_independent_eigencam_call(folder_run, images):
    """Each row holds what EigenCAM computes for that image alone (golden values)."""
    from eigencam.io import load_image
    from eigencam.methods import EigenCAM
    from eigencam.models import load_model
    from eigencam.postprocess import boxes as bx
    from eigencam.postprocess.maps import normalize

    out, report = folder_run
    assert report.complete and report.counts["images"] == 11
    table = read_results(out)
    assert table.column("shard").to_pylist() == [0] * 4 + [1] * 4 + [2] * 3
    assert table.column("position").to_pylist() == [0, 1, 2, 3] * 2 + [0, 1, 2]
    assert table.column("id").to_pylist() == [str(p) for p in images]
    rows = table.to_pylist()
    bad = rows[-1]
    assert bad["status"] == "error" and bad["map"] is None
    assert bad["error"].startswith("corrupt or truncated image data")
    loaded = load_model(TINY)
    pre = loaded.preprocessing.with_overrides(input_size=(32, 32))
    cam = EigenCAM(loaded.model, "auto")
    maps = decode_maps(table)
    with pytest.raises(BatchInputError, match="--save maps"):
        decode_maps(table.drop_columns(["map"]))
    for k in (0, 5, 9):
        image = load_image(images[k])
        res = cam(pre.batch([image]))
        row = rows[k]
        assert row["status"] == "ok" and (row["width"], row["height"]) == image.size
        assert row["layer"] == res.layer == "features"
        expect = bx.quantize(normalize(res.raw[0]).numpy())
        np.testing.assert_array_equal(maps[k], expect)
        probs = res.output.softmax(1)[0]
        assert row["top5_index"] == probs.topk(5).indices.tolist()
        np.testing.assert_allclose(row["top5_prob"], probs.topk(5).values.numpy(), rtol=1e-6)
        assert row["explained_variance"][0] == pytest.approx(
            float(res.explained_variance_ratio[0, 0]), rel=1e-6
        )
        comps = bx.connected_components(
            bx.quantize(res.maps[:, 0].numpy()), np.array([DEFAULT_THRESHOLD])
        )
        region = np.array([pre.crop_region(*image.size)])
        box = bx.to_original(comps.largest, region, (32, 32))[0, 0]
        box = np.clip(box, 0, [image.width, image.height] * 2)
        np.testing.assert_allclose(row["box"], box, rtol=1e-6)
    # The box covers the bright blob drawn in each image (the tiny model's map is crude, but
    # its box must at least lie inside the image).
    for row in rows[:-1]:
        x0, y0, x1, y1 = row["box"]
        assert 0 <= x0 < x1 <= row["width"] and 0 <= y0 < y1 <= row["height"]


def test_every_input_kind_gives_the_same_values(images, folder_run, tmp_path):
    """Folder, list, Parquet bytes, Parquet paths and WebDataset: same images, same values."""
    out, _ = folder_run
    reference = read_results(out).select(VALUE_COLUMNS)
    listing = tmp_path / "all.txt"
    listing.write_text("\n".join(str(p) for p in images) + "\n")
    pq_bytes = write_parquet_bytes(tmp_path / "b.parquet", images)
    pq_paths = write_parquet_paths(tmp_path / "p.parquet", images)
    tars = write_tars(tmp_path / "wds", images, per_tar=4)
    for name, inputs in {
        "list": [str(listing)],
        "parquet-bytes": [str(pq_bytes)],
        "parquet-paths": [str(pq_paths)],
        "webdataset": [str(t) for t in tars],
        "glob": [str(images[0].parent / "*")],
    }.items():
        run = tmp_path / name
        report = run_batch(inputs, run, SPEC, shard_size=4)
        assert report.counts["images"] == 11, name
        got = read_results(run).select(VALUE_COLUMNS)
        assert got.equals(reference), name


def test_save_kinds_map_png_and_overlays(images, tmp_path):
    spec = BatchSpec(model=TINY, save=("map-png", "overlays"), **FAST)
    run_batch([str(p) for p in images[:4]], tmp_path, spec)
    table = read_results(tmp_path)
    assert "map" not in table.column_names and "box" not in table.column_names
    for row, path in zip(table.to_pylist(), images[:4]):
        size = Image.open(path).size
        png = Image.open(io.BytesIO(row["map_png"][0]))
        assert png.mode == "L" and png.size == size
        assert np.asarray(png).max() == 255
        overlay = Image.open(tmp_path / row["overlay"])
        assert overlay.size == size and overlay.mode == "RGB"


# -- resume, idempotence -------------------------------------------------------------------


def test_rerun_skips_finished_shards_and_recomputes_missing_ones(folder_run, tmp_path, images):
    out, _ = folder_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    before = {f.name: f.read_bytes() for f in shard_files(copy)}
    (copy / "shards" / "part-00001.parquet").unlink()
    stale = copy / "shards" / ".part-00001.parquet.x1y2.tmp"
    stale.write_bytes(b"half a file")
    report = run_batch([str(images[0].parent)], copy, SPEC, shard_size=4)
    assert [s.shard for s in report.computed] == [1] and report.skipped == 2
    assert not stale.exists()
    assert {f.name: f.read_bytes() for f in shard_files(copy)} == before
    assert report.complete and len(report.manifest["runs"]) == 2
    # A finished run: nothing computed, the model is not even loaded.
    again = run_batch([str(images[0].parent)], copy, SPEC, shard_size=4)
    assert again.computed == [] and again.skipped == 3 and again.complete


def test_other_settings_in_the_same_folder_are_refused(folder_run, images, tmp_path):
    out, _ = folder_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    other = BatchSpec(model=TINY, threshold=0.5, **FAST)
    with pytest.raises(RunMismatchError, match="threshold: 0.15 there, 0.5 now"):
        run_batch([str(images[0].parent)], copy, other, shard_size=4)
    with pytest.raises(RunMismatchError, match="input shard_size"):
        run_batch([str(images[0].parent)], copy, SPEC, shard_size=5)
    # Shard files of another run without a manifest are refused too.
    (copy / "manifest.json").unlink()
    with pytest.raises(RunMismatchError, match="shard files of another batch run"):
        run_batch([str(images[0].parent)], copy, other, shard_size=4)


BATCH_ARGS = [
    "--model",
    SLOW,
    "--input-size",
    "32",
    "--threads",
    "1",
    "--batch-size",
    "2",
    "--shard-size",
    "2",
    "--quiet",
]


def test_kill_9_then_rerun_gives_the_uninterrupted_result(images, tmp_path, monkeypatch, capsys):
    """A run killed with SIGKILL after its first shards, rerun, equals a run never killed."""
    inputs = [str(images[0].parent)]
    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "EIGENCAM_TEST_SLEEP": "0.3"}
    cmd = [sys.executable, "-m", "eigencam", "batch", *inputs, "--out", str(killed), *BATCH_ARGS]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while len(shard_files(killed)) < 2:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no shard written in 120 s"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    done = len(shard_files(killed))
    assert 2 <= done < 6, "the kill did not land mid-run"
    manifest = json.loads((killed / "manifest.json").read_text())
    assert manifest["status"] == "running"  # killed before it could say otherwise
    monkeypatch.setenv("EIGENCAM_TEST_SLEEP", "0")
    code = main(["batch", *inputs, "--out", str(killed), *BATCH_ARGS])  # the same command
    stdout, _ = capsys.readouterr()
    assert code == 1  # 1: the corrupt image is a failure
    assert f"skipped {done} finished" in stdout
    whole = tmp_path / "whole"
    assert main(["batch", *inputs, "--out", str(whole), *BATCH_ARGS]) == 1
    assert [f.name for f in shard_files(killed)] == [f.name for f in shard_files(whole)]
    for a, b in zip(shard_files(killed), shard_files(whole)):
        assert a.read_bytes() == b.read_bytes(), a.name
    m_killed = json.loads((killed / "manifest.json").read_text())
    m_whole = json.loads((whole / "manifest.json").read_text())
    assert m_killed["status"] == m_whole["status"] == "complete"
    for key in ("counts", "failures", "shards", "fingerprint", "settings", "layer"):
        assert m_killed[key] == m_whole[key], key
    assert not list(killed.rglob("*.tmp"))


# -- manifest, CLI ---------------------------------------------------------------------------


def test_manifest_contents(folder_run, images):
    out, _ = folder_run
    m = json.loads((out / "manifest.json").read_text())
    assert m["status"] == "complete" and m["layer"] == "features"
    assert m["counts"] == {
        "images": 11,
        "ok": 10,
        "failed": 1,
        "shards": 3,
        "shards_done": 3,
        "unmatched_inputs": 0,
    }
    assert m["failures"] == [
        {
            "shard": 2,
            "position": 2,
            "id": str(images[-1]),
            "source": str(images[-1]),
            "error": "corrupt or truncated image data (Truncated File Read)",
        }
    ]
    assert m["input"]["kind"] == "images" and m["input"]["shard_size"] == 4
    assert m["settings"]["model"] == TINY and m["settings"]["threshold"] == 0.15
    assert m["settings"]["input_size"] == [32, 32] and m["settings"]["save"] == ["maps", "boxes"]
    assert m["execution"]["engine"] == "local" and m["execution"]["batch_size"] == 3
    assert {"python", "torch", "numpy", "pyarrow", "pillow"} <= set(m["versions"])
    assert m["eigencam_version"] and len(m["fingerprint"]) == 64
    assert [s["rows"] for s in m["shards"]] == [4, 4, 3]
    assert m["numerics"] == [
        {"device": "cpu", "threads": 1, "batch_size": 3, "torch": torch.__version__}
    ]
    run = m["runs"][-1]
    assert run["shards_computed"] == 3 and run["images_computed"] == 11
    assert run["engine"]["engine"] == "local" and run["engine"]["threads"] == 1


def test_cli_batch(images, tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(
        [
            "batch",
            str(images[0].parent),
            "--out",
            str(out),
            "--model",
            TINY,
            "--input-size",
            "32",
            "--threads",
            "1",
            "--shard-size",
            "4",
            "--quiet",
            "--save",
            "maps,boxes,overlays",
            "--threshold",
            "0.3",
        ]
    )
    stdout, stderr = capsys.readouterr()
    assert code == 1  # the corrupt image
    assert "11 image(s) in 3/3 shard(s): 10 explained, 1 failed" in stdout
    assert "zz-corrupt.jpg: corrupt or truncated image data" in stderr
    m = json.loads((out / "manifest.json").read_text())
    assert m["command"][:2] == ["eigencam", "batch"] or m["command"][0] == "eigencam"
    assert m["settings"]["threshold"] == 0.3
    assert len(list((out / "overlays").rglob("*.png"))) == 10
    # usage errors exit 2 with the reason
    for argv, reason in [
        (["--save", "maps,pictures"], "unknown kind(s) ['pictures']"),
        (["--num-gpus-per-worker", "1"], "apply to --engine ray"),
        (["--threshold", "1.5"], "threshold must be a fraction"),
        (["--column", "x"], "column applies to Parquet"),
        (["--method", "gradcam", "--components", "2"], "--components does not apply"),
    ]:
        code = main(
            [
                "batch",
                str(images[0].parent),
                "--out",
                str(tmp_path / "u"),
                "--model",
                TINY,
                "--quiet",
                *argv,
            ]
        )
        _, stderr = capsys.readouterr()
        assert code == 2 and reason in stderr, (argv, stderr)


def test_ray_pool_sizing_and_argument_errors(tmp_path):
    """Actor counts from the cluster's resources; bad pool arguments fail before Ray starts."""
    from eigencam.batch.engines import RayEngine, default_workers
    from eigencam.batch.worker import ShardWorker
    from eigencam.errors import BatchError

    assert default_workers({"CPU": 16.0}, 4.0, 0.0) == 4
    assert default_workers({"CPU": 2.0}, 4.0, 0.0) == 1  # at least one actor
    assert default_workers({"CPU": 16.0, "GPU": 8.0}, 8.0, 1.0) == 8  # one per GPU
    assert default_workers({"CPU": 16.0, "GPU": 8.0}, 2.0, 0.5) == 16  # two per GPU
    with pytest.raises(BatchError, match="num_gpus_per_worker=1 but the Ray cluster has 0 GPU"):
        default_workers({"CPU": 16.0}, 1.0, 1)
    for kwargs, message in (
        ({"num_workers": 0}, "num_workers must be an integer >= 1, got 0"),
        ({"num_cpus_per_worker": -1}, "num_cpus_per_worker must be a number >= 0, got -1"),
        ({"num_gpus_per_worker": "1"}, "num_gpus_per_worker must be a number >= 0, got '1'"),
    ):
        with pytest.raises(ValueError, match=message):
            RayEngine(ShardWorker(SPEC, tmp_path, "f"), **kwargs)


@pytest.mark.parametrize(
    ("argv", "missing", "named"),
    [
        ([], "pyarrow", "pip install 'eigencam[batch]'"),
        (["--engine", "ray"], "ray", "pip install 'eigencam[ray]'"),
        (["--model", "timm:resnet18"], "timm", "pip install 'eigencam[timm]'"),
    ],
)
def test_batch_names_a_missing_package_before_any_model_loads(
    monkeypatch, capsys, tmp_path, images, argv, missing, named
):
    """No model load and no progress bar: the one-line error and exit 2 come first."""
    import importlib.util

    from eigencam.cli import common

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == missing else real(name, *a)
    )
    monkeypatch.setattr(common, "load_model", lambda *a, **k: pytest.fail("model loaded"))
    code = main(["batch", str(images[0].parent), "--out", str(tmp_path / "o"), *argv])
    err = capsys.readouterr().err
    assert code == 2 and named in err
    assert not (tmp_path / "o").exists() and "%" not in err  # nothing written, no bar


def _arrow_type_name(t) -> str:
    """An Arrow type as docs/scale.md writes it: int32, float32, list<T>, fixed_size_list<T>[n]."""
    if pa.types.is_fixed_size_list(t):
        return f"fixed_size_list<{_arrow_type_name(t.value_type)}>[{t.list_size}]"
    if pa.types.is_list(t):
        return f"list<{_arrow_type_name(t.value_type)}>"
    return {"float": "float32", "int32": "int32", "string": "string", "binary": "binary"}[str(t)]


def test_shard_columns_have_the_types_docs_scale_md_documents():
    from eigencam.batch.shards import result_schema

    docs = (Path(__file__).parents[2] / "docs" / "scale.md").read_text()
    table = docs.split("Columns of the shard files")[1].split("\n\n")[1]
    documented = {}
    for line in table.splitlines()[2:]:
        names, types = line.split("|")[1:3]
        names = [n.strip(" `") for n in names.split(",")]
        types = [t.strip() for t in types.split(",")]
        types = types if len(types) == len(names) else types * len(names)
        documented.update(zip(names, types))
    schema = result_schema(["maps", "boxes", "map-png", "overlays"])
    actual = {f.name: _arrow_type_name(f.type) for f in schema}
    assert documented == actual
