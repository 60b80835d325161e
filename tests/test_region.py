"""`slidemap region`: one job per product footprint, a manifest true at every moment, resumable, one merged map."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pyogrio.raw
import pytest
import rasterio
from affine import Affine
from pyproj import Transformer

import ingest_fixtures as fx
from checkpoints import save_checkpoint
from slidemap.cli import main
from slidemap.errors import InputError
from slidemap.io import tmp_prefix
from slidemap.region.merge import JobMaps
from slidemap.region.plan import Footprint, job_name, plan_jobs

SHIFT = 800.0  # metres: the second product's origin east of the first, so 400 m (40 px) of the two overlap
ZONE50 = "EPSG:32650"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["region", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def region_inputs(tmp_path_factory) -> dict[str, list[str]]:
    """Two overlapping products in UTM 51N (tiles T51QTF, T51QUF), one in UTM 50N to their south-west, a DEM
    covering all of them, and an untrained checkpoint."""
    root = tmp_path_factory.mktemp("region")
    a = fx.write_safe(root / "a", tile="T51QTF")
    b = fx.write_safe(root / "b", tile="T51QUF", origin=(fx.ORIGIN[0] + SHIFT, fx.ORIGIN[1]))
    x, y = Transformer.from_crs(fx.UTM, ZONE50, always_xy=True).transform(fx.ORIGIN[0] - 1000.0, fx.ORIGIN[1] - 900.0)
    c = fx.write_safe(root / "c", tile="T50QRL", crs=ZONE50, origin=(round(x, -1), round(y, -1)))
    dem = fx.write_dem_utm(root / "dem.tif", (fx.ORIGIN[0] - 2500, fx.ORIGIN[1] - 3000, fx.ORIGIN[0] + 2500,
                                               fx.ORIGIN[1] + 300))
    ckpt = save_checkpoint(root / "model.ckpt")
    return {"s2": [str(a), str(b), str(c)], "dem": [str(dem)], "ckpt": [str(ckpt)]}


def test_products_are_planned_as_one_job_per_footprint(region_inputs, tmp_path):
    jobs = plan_jobs(region_inputs["s2"])
    assert [j.name for j in jobs] == ["T51QTF", "T51QUF", "T50QRL"]
    assert jobs[0].footprint.crs == "EPSG:32651" and jobs[2].footprint.crs == ZONE50
    assert jobs[1].footprint.bounds[0] - jobs[0].footprint.bounds[0] == pytest.approx(SHIFT)
    twice = plan_jobs([region_inputs["s2"][0], region_inputs["s2"][0]])  # the same footprint: one job
    assert len(twice) == 1 and len(twice[0].s2) == 2
    assert job_name("S2B_MSIL2A_20240830T022529_N0509_R046_T51QTF_20240830T060000", {"T51QTF"}) == "T51QTF-2"
    assert job_name("my product (copy)", set()) == "my_product_copy_"


@pytest.mark.slow
def test_a_region_is_mapped_merged_and_resumed(capsys, caplog, region_inputs, tmp_path):
    caplog.set_level("INFO")
    out = tmp_path / "region"
    args = ["--ckpt", *region_inputs["ckpt"], "--s2", *region_inputs["s2"], "--dem", *region_inputs["dem"],
            "--out", str(out), "--workers", "2"]
    code, stdout, stderr = run(capsys, *args)
    assert code == 0, stderr[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert [(j["name"], j["status"]) for j in manifest["jobs"]] == [("T51QTF", "done"), ("T51QUF", "done"),
                                                                      ("T50QRL", "done")]
    assert sorted(p.name for p in (out / "jobs").iterdir()) == ["T50QRL", "T51QTF", "T51QUF"]  # no partial left
    assert {Path(line).name for line in stdout.split()} == {"region_probability.tif", "region_binary.tif",
                                                            "region_landslides.gpkg"}
    with rasterio.open(out / "region_probability.tif") as src:
        assert src.crs.to_string() == "EPSG:32651"  # two of the three jobs, most of the area
        merged, transform = src.read(1), src.transform
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
    # each pixel from the job whose footprint centre is nearest among those with data there
    a, b = (out / "jobs" / n / f"{n}_probability.tif" for n in ("T51QTF", "T51QUF"))
    with rasterio.open(a) as sa, rasterio.open(b) as sb:
        pa, pb = sa.read(1), sb.read(1)
        centre_a, centre_b = sa.bounds.left + 600, sb.bounds.left + 600
        filled_from_neighbour = 0
        for x_off in (50, 500, 905, 1005, 1150, 1500):  # A only, overlap nearer A, nearer B, B only
            x, y = sa.bounds.left + x_off, sa.bounds.top - 305
            col, row = ~transform * (x, y)
            value = merged[int(row), int(col)]
            candidates = []  # (distance to the footprint centre, value) of the jobs with data here
            for src, arr, centre in ((sa, pa, centre_a), (sb, pb, centre_b)):
                c, r = ~src.transform * (x, y)
                if 0 <= r < arr.shape[0] and 0 <= c < arr.shape[1] and np.isfinite(arr[int(r), int(c)]):
                    candidates.append((abs(x - centre), arr[int(r), int(c)]))
            expected = min(candidates)[1] if candidates else np.nan
            assert value == expected or (np.isnan(value) and np.isnan(expected)), (x_off, value, expected)
            filled_from_neighbour += len(candidates) == 1 and sa.bounds.left + SHIFT < x < sa.bounds.right
        assert filled_from_neighbour == 2  # x 1005 and 1150 lie in B's cloud (cols 20-39): A's values fill them
    with rasterio.open(out / "region_binary.tif") as src:
        binary = src.read(1)
    assert set(np.unique(binary)) <= {0, 1, 255}
    fields = list(pyogrio.raw.read(out / "region_landslides.gpkg", layer="landslides")[0]["fields"])
    assert fields == ["id", "pixels", "area_m2", "mean_probability"]
    assert (out / "region_probability.qml").is_file()

    # a re-run: every job done, nothing mapped again
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "jobs").iterdir()}
    caplog.clear()
    code, _, _ = run(capsys, *args)
    assert code == 0 and "3 job(s), 0 to run" in caplog.text
    assert {p.name: p.stat().st_mtime_ns for p in (out / "jobs").iterdir()} == stamps

    # a job killed in flight (status running, its folder never renamed into place) runs again, alone
    manifest["jobs"][1]["status"] = "running"
    (out / "manifest.json").write_text(json.dumps(manifest))
    dead = subprocess.Popen(["true"])
    dead.wait()  # the pid of a process that no longer runs: the killed run's
    partial = tmp_prefix("T51QUF").replace(f"-{os.getpid()}-", f"-{dead.pid}-") + "partial"
    os.rename(out / "jobs" / "T51QUF", out / "jobs" / partial)
    caplog.clear()
    code, _, _ = run(capsys, *args)
    assert code == 0 and "3 job(s), 1 to run" in caplog.text
    again = {p.name: p.stat().st_mtime_ns for p in (out / "jobs").iterdir()}
    assert again["T51QTF"] == stamps["T51QTF"] and again["T50QRL"] == stamps["T50QRL"]
    assert sorted(again) == ["T50QRL", "T51QTF", "T51QUF"]

    code, stdout, _ = run(capsys, "--status", str(out))
    assert code == 0 and "3 job(s): 3 done; merged" in stdout


@pytest.mark.slow
def test_a_failed_job_is_recorded_with_its_error_and_nothing_is_merged(capsys, region_inputs, tmp_path):
    dem = fx.write_dem_utm(tmp_path / "small_dem.tif", (fx.ORIGIN[0], fx.ORIGIN[1] - 1200, fx.ORIGIN[0] + 1200,
                                                        fx.ORIGIN[1]))  # covers T51QTF only
    out = tmp_path / "region"
    code, _, stderr = run(capsys, "--ckpt", *region_inputs["ckpt"], "--s2", *region_inputs["s2"][:2],
                          "--dem", str(dem), "--out", str(out))
    assert code == 2 and "1 of 2 job(s) failed" in stderr.splitlines()[-1]
    jobs = {j["name"]: j for j in json.loads((out / "manifest.json").read_text())["jobs"]}
    assert jobs["T51QTF"]["status"] == "done" and jobs["T51QUF"]["status"] == "failed"
    assert "dem" in jobs["T51QUF"]["error"].lower()
    assert not list(out.glob("region_*")) and not (out / "jobs" / "T51QUF").exists()
    _, stdout, _ = run(capsys, "--status", str(out))
    assert "T51QUF" in stdout and "failed" in stdout and "not merged" in stdout


@pytest.mark.slow
def test_a_region_maps_with_an_exported_model_as_with_its_checkpoint(capsys, region_inputs, tmp_path):
    pytest.importorskip("onnxruntime", reason="--engine onnxruntime needs slidemap[onnx]")
    onnx = tmp_path / "model.onnx"
    assert main(["export", *region_inputs["ckpt"], "--out", str(onnx)]) == 0
    common = ["--s2", *region_inputs["s2"][:2], "--dem", *region_inputs["dem"]]
    code, _, err = run(capsys, "--ckpt", *region_inputs["ckpt"], *common, "--out", str(tmp_path / "torch"),
                       "--precision", "32")  # as the fp32 graph
    assert code == 0, err[-2000:]
    code, _, err = run(capsys, "--model", str(onnx), *common, "--out", str(tmp_path / "ort"))
    assert code == 0, err[-2000:]
    manifest = json.loads((tmp_path / "ort" / "manifest.json").read_text())
    assert manifest["inputs"]["engine"] == "onnxruntime" and manifest["inputs"]["model"] == str(onnx.resolve())
    with rasterio.open(tmp_path / "torch" / "region_probability.tif") as a, \
            rasterio.open(tmp_path / "ort" / "region_probability.tif") as b:
        pa, pb = a.read(1), b.read(1)
    assert np.array_equal(np.isnan(pa), np.isnan(pb)) and np.isfinite(pa).any()
    assert np.nanmax(np.abs(pa - pb)) < 1e-4  # fp32 graph, same tiles
    with rasterio.open(tmp_path / "ort" / "jobs" / "T51QTF" / "T51QTF_probability.tif") as src:
        assert src.tags()["SLIDEMAP_ENGINE"] == "onnxruntime"  # every job mapped with the exported model
    code, _, err = run(capsys, "--model", str(onnx), "--ckpt", *region_inputs["ckpt"], *common, "--out",
                       str(tmp_path / "both"))
    assert code == 2 and "--model: is an ONNX model for --engine onnxruntime; the torch engine maps --ckpt" in err


def test_bad_region_commands_are_one_line(capsys, region_inputs, tmp_path):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("keep")
    code, _, err = run(capsys, "--ckpt", *region_inputs["ckpt"], "--s2", *region_inputs["s2"], "--dem",
                       *region_inputs["dem"], "--out", str(busy))
    assert code == 2 and "holds notes.txt, which slidemap region did not write" in err.strip()
    (busy / "manifest.json").write_text(json.dumps({"inputs": {}, "jobs": []}))  # a manifest does not make it ours
    for force in ([], ["--force"]):
        code, _, err = run(capsys, "--ckpt", *region_inputs["ckpt"], "--s2", *region_inputs["s2"], "--dem",
                           *region_inputs["dem"], "--out", str(busy), *force)
        assert code == 2 and len(err.strip().splitlines()) == 1 and "holds notes.txt" in err
        assert sorted(p.name for p in busy.iterdir()) == ["manifest.json", "notes.txt"]
    code, _, err = run(capsys, "--ckpt", *region_inputs["ckpt"], "--s2", *region_inputs["s2"], "--dem",
                       *region_inputs["dem"], "--out", str(tmp_path / "new"), "--tile", "100")
    assert code == 2 and "--tile: must be a multiple of 32 px" in err and not (tmp_path / "new").exists()
    code, _, err = run(capsys, "--status", str(tmp_path))
    assert code == 2 and "not a region folder" in err
    code, _, err = run(capsys, "--s2", *region_inputs["s2"], "--dem", *region_inputs["dem"], "--out", str(tmp_path))
    assert code == 2 and "--ckpt: missing" in err
    code, _, err = run(capsys, "--engine", "onnxruntime", "--s2", *region_inputs["s2"], "--dem",
                       *region_inputs["dem"], "--out", str(tmp_path / "new"))
    assert code == 2 and "--model: missing" in err and not (tmp_path / "new").exists()
    code, _, err = run(capsys, "--ckpt", *region_inputs["ckpt"], "--s2", str(tmp_path / "nope.SAFE"), "--dem",
                       *region_inputs["dem"], "--out", str(tmp_path / "new"))
    assert code == 2 and "not found" in err and not (tmp_path / "new").exists()  # nothing written


def write_job(folder: Path, name: str, prob: np.ndarray, left: float, top: float = 1000.0) -> JobMaps:
    """A finished job's maps by hand: probability and binary (threshold 0.5) on a 10 m grid in UTM 51N."""
    folder.mkdir(parents=True)
    profile = dict(driver="GTiff", width=prob.shape[1], height=prob.shape[0], count=1, crs=fx.UTM,
                   transform=Affine(10, 0, left, 0, -10, top))
    with rasterio.open(folder / f"{name}_probability.tif", "w", dtype="float32", nodata=float("nan"), **profile) as d:
        d.write(prob.astype(np.float32), 1)
    binary = np.where(np.isnan(prob), 255, prob > 0.5).astype(np.uint8)
    with rasterio.open(folder / f"{name}_binary.tif", "w", dtype="uint8", nodata=255, **profile) as d:
        d.write(binary, 1)
    bounds = (left, top - 10 * prob.shape[0], left + 10 * prob.shape[1], top)
    return JobMaps(name, folder, Footprint(fx.UTM, bounds))


def test_a_landslide_cut_by_a_tile_edge_is_one_polygon_counted_once(tmp_path):
    from slidemap.region.merge import merge_region

    a = np.full((30, 100), 0.1)  # columns 0-99 (x 0-1000 m)
    b = np.full((30, 100), 0.2)  # columns 60-159: 40 columns overlap; the centres (x 500, 1100) split them at x 800
    a[10:20, 70:100] = 0.9  # one landslide, columns 70-89 of the region, seen by both products
    b[10:20, 10:30] = 0.7
    b[0:5, 0:20] = np.nan  # B's cloud in the overlap, on A's side of the split
    b[25:30, 30:40] = np.nan  # ... and on B's side: A fills it
    a[25:30, 90:100] = 0.3
    jobs = [write_job(tmp_path / "A", "A", a, 0.0), write_job(tmp_path / "B", "B", b, 600.0)]
    out = tmp_path / "region"
    out.mkdir()
    merge_region(jobs, out)
    with rasterio.open(out / "region_probability.tif") as src:
        merged = src.read(1)
        assert src.shape == (30, 160) and src.transform.c == 0.0
    np.testing.assert_array_equal(merged[:, :80], a[:, :80].astype(np.float32))  # nearer A's centre (and B's cloud)
    expected_b = b[:, 20:].copy()
    expected_b[25:30, 10:20] = 0.3  # B's cloud past the split: A's values
    np.testing.assert_array_equal(merged[:, 80:], expected_b.astype(np.float32))  # nearer B's centre
    meta, _, _, fields = pyogrio.raw.read(out / "region_landslides.gpkg", layer="landslides")
    assert len(fields[0]) == 1  # one polygon across the seam at x 800
    assert fields[1][0] == 200 and fields[2][0] == pytest.approx(200 * 100.0)  # 10 rows x 20 columns, once
    assert fields[3][0] == pytest.approx((100 * 0.9 + 100 * 0.7) / 200, abs=1e-4)  # mean over the whole polygon


# ---------------------------------------------------------------- engines, --force, --tile


def engine_config(path: Path, **params: object) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(params))
    return path


@pytest.mark.slow
def test_submitit_local_maps_the_region_as_the_local_pool_and_force_starts_over(capsys, region_inputs, tmp_path):
    common = ["--ckpt", *region_inputs["ckpt"], "--s2", *region_inputs["s2"][:2], "--dem", *region_inputs["dem"]]
    local, array = tmp_path / "local", tmp_path / "array"
    code, _, err = run(capsys, *common, "--out", str(local))
    assert code == 0, err[-2000:]
    config = engine_config(tmp_path / "engine.yaml", timeout_min=10, cpus_per_task=1)
    code, _, err = run(capsys, *common, "--out", str(array), "--executor", "submitit-local",
                       "--executor-config", str(config))
    assert code == 0, err[-2000:]
    jobs = json.loads((array / "manifest.json").read_text())["jobs"]
    assert [(j["name"], j["status"]) for j in jobs] == [("T51QTF", "done"), ("T51QUF", "done")]
    assert all(j["job_id"] for j in jobs) and len({j["job_id"] for j in jobs}) == 2  # submitit's own job ids
    assert all(0.05 < j["peak_gib"] < 8 and j["seconds"] > 0 for j in jobs)  # each job's own peak memory
    assert list((array / ".submitit").glob("*_log.out"))  # submitit's logs under OUT/.submitit/
    for layer in ("probability", "binary"):
        with rasterio.open(local / f"region_{layer}.tif") as a, rasterio.open(array / f"region_{layer}.tif") as b:
            assert a.transform == b.transform and a.crs == b.crs
            np.testing.assert_array_equal(a.read(1), b.read(1))  # pixel for pixel, NaN where NaN
    assert pyogrio.raw.read(local / "region_landslides.gpkg")[3][1].tolist() == \
        pyogrio.raw.read(array / "region_landslides.gpkg")[3][1].tolist()

    # the same folder for another command line: refused in one line, then started over with --force
    code, _, err = run(capsys, *common, "--out", str(array), "--threshold", "0.6")
    assert code == 2 and "holds another region" in err and "--force" in err
    stamps = {p.name: p.stat().st_mtime_ns for p in (array / "jobs").iterdir()}
    code, _, err = run(capsys, *common, "--out", str(array), "--threshold", "0.6", "--force")
    assert code == 0, err[-2000:]
    assert not (array / ".submitit").exists()  # the earlier engine's files went with it
    record = json.loads((array / "manifest.json").read_text())
    assert "0.6" in record["inputs"]["map_options"] and all("job_id" not in j for j in record["jobs"])
    assert all(p.stat().st_mtime_ns != stamps[p.name] for p in (array / "jobs").iterdir())  # mapped again


def test_force_removes_only_the_region_files(tmp_path):
    from slidemap.region.jobs import remove_region_files

    out = tmp_path / "region"
    for folder in ("jobs/T51QTF", ".submitit/123_0", "notes"):
        (out / folder).mkdir(parents=True)
    for name in ("manifest.json", "region_probability.tif", "region_probability.qml", "region_landslides.gpkg",
                 "jobs/T51QTF/T51QTF_binary.tif", "notes/keep.txt", "my_region.tif", "manifest.json.bak"):
        (out / name).write_text("x")
    removed = remove_region_files(out)
    assert removed == [".submitit", "jobs", "manifest.json", "region_landslides.gpkg", "region_probability.qml",
                       "region_probability.tif"]
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json.bak", "my_region.tif", "notes"]
    assert (out / "notes" / "keep.txt").read_text() == "x"


def test_slurm_parameters_come_from_the_yaml(monkeypatch, tmp_path):
    import shutil

    from submitit.slurm.slurm import _make_sbatch_string

    from slidemap.region.engines import check_executor, default_config, make_executor

    monkeypatch.setattr(shutil, "which", lambda name: f"/opt/slurm/bin/{name}")  # a login node's sbatch and srun
    config = check_executor("slurm", str(engine_config(tmp_path / "slurm.yaml", partition="landslide", timeout_min=90,
                                                       cpus_per_task=4, mem_gb=12, array_parallelism=2,
                                                       account="geo")))
    executor = make_executor("slurm", tmp_path / ".submitit", config)
    params = executor._executor.parameters
    assert params == {"job_name": "slidemap-region", "partition": "landslide", "time": 90, "cpus_per_task": 4,
                      "mem": "12GB", "array_parallelism": 2, "account": "geo"}
    sbatch = _make_sbatch_string(command="python -m submitit.core._submit x", folder=tmp_path, map_count=3, **params)
    for line in ("--partition=landslide", "--time=90", "--cpus-per-task=4", "--mem=12GB", "--array=0-2%2",
                 "--account=geo", "--job-name=slidemap-region"):
        assert f"#SBATCH {line}\n" in sbatch
    assert check_executor("slurm", None) == {k: v for k, v in
                                             __import__("yaml").safe_load(default_config("slurm").read_text()).items()
                                             if v is not None}  # the shipped default parses
    bad = engine_config(tmp_path / "bad.yaml", partition="cpu", cpu_per_task=4)
    with pytest.raises(InputError, match="unknown executor parameter.*cpu_per_task"):
        check_executor("slurm", str(bad))
    with pytest.raises(InputError, match="timeout_min: expected a number"):
        check_executor("slurm", str(engine_config(tmp_path / "t.yaml", timeout_min="2h")))


def test_slurm_without_sbatch_is_one_line_and_writes_nothing(capsys, monkeypatch, region_inputs, tmp_path):
    import shutil

    monkeypatch.setattr(shutil, "which", lambda name: None)
    out = tmp_path / "new"
    code, stdout, err = run(capsys, "--ckpt", *region_inputs["ckpt"], "--s2", *region_inputs["s2"], "--dem",
                            *region_inputs["dem"], "--out", str(out), "--executor", "slurm")
    assert code == 2 and stdout == "" and len(err.strip().splitlines()) == 1
    assert "slurm: no sbatch on this machine" in err and not out.exists()
    code, _, err = run(capsys, "--ckpt", *region_inputs["ckpt"], "--s2", *region_inputs["s2"], "--dem",
                       *region_inputs["dem"], "--out", str(out), "--executor", "ray")
    assert code == 2 and "unknown executor 'ray'" in err and not out.exists()


def test_tile_defaults_and_their_reasons():
    from slidemap.mapping.mosaic import default_overlap, fit_tile, stride_px

    assert [default_overlap(t) for t in (32, 64, 128)] == [0.5, 0.5, 0.5]  # the training windows: as before
    assert default_overlap(512) == 0.125 and 512 - stride_px(512, 0.125) == 64  # a 64 px ramp
    # pixels computed per pixel of a large scene: (tile / stride)^2, 4 at the old tiles, 1.31 at 512 px
    assert (512 / stride_px(512, default_overlap(512))) ** 2 == pytest.approx(1.306, abs=1e-3)
    assert fit_tile(512, (120, 120)) == 128 and fit_tile(512, (100, 600)) == 512 and fit_tile(64, (20, 16)) == 32


@pytest.mark.slow
def test_large_tiles_map_closer_to_the_whole_scene_than_the_training_window(tiny_run, synthetic_root):
    """Blended tiles against the network run once over the whole area (no tile border anywhere): 128 px tiles with
    their 64 px ramps come closer than the training window's tiles, the old default of slidemap map."""
    import torch

    from slidemap.data.sites.reader import read_site
    from slidemap.mapping.checkpoint import load_checkpoint
    from slidemap.mapping.mosaic import default_overlap, predict_mosaic, site_reader

    model = load_checkpoint(tiny_run / "checkpoints" / "best.ckpt")
    site = read_site(synthetic_root / "china", require_label=False)
    read, valid = site_reader(site, model.normaliser)
    stack = read(0, 192)[0][:, :, :416]  # multiples of 32: the network pads nothing, so `whole` is exact
    with torch.no_grad():
        whole = torch.sigmoid(model.net.eval()(torch.from_numpy(np.ascontiguousarray(stack))[None]))[0, 0].numpy()
    errors = {}
    for tile in (model.window, 128):
        mosaic = predict_mosaic(model.net, stack, np.ones(stack.shape[1:], bool), tile, overlap=default_overlap(tile))
        errors[tile] = np.abs(mosaic - whole)
    old, new = errors[model.window], errors[128]
    # measured: median 0.061 -> 0.005, 99th percentile 0.32 -> 0.09, max 0.60 -> 0.34 (a 2-epoch net, not smooth)
    assert np.median(new) < 0.25 * np.median(old) and np.percentile(new, 99) < 0.5 * np.percentile(old, 99)
    assert new.max() < old.max()
