"""Issue 19's probe: bad input and interruptions across every command, each checked for its exit status, a one-line
message and the state of the disk afterwards (nothing lost, nothing half-written, nothing stray).

In-process cases call ``slidemap.cli.main``; the Hydra entry points and every signal run in real subprocesses.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest

import fake_sites as fs
from checkpoints import save_checkpoint
from conftest import REPO
from slidemap.cli import main
from slidemap.io import TMP_TAG

ENV = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "HYDRA_FULL_ERROR": "0"}


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` with its file size and modification time: equal snapshots = nothing touched.

    A folder's own time is left out: a staging folder made and removed inside it changes that, not its content."""
    return {str(p.relative_to(root)): (0, 0) if p.is_dir() else (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


def stray(root: Path) -> list[str]:
    """Temporaries anywhere under ``root`` (slidemap's tagged names and the older hidden ones)."""
    return [str(p) for p in root.rglob("*") if TMP_TAG in p.name or ".tmp" in p.name or "slidemap-scene" in p.name]


def one_line(err: str) -> str:
    """The single line a failure prints (log lines aside); never a traceback."""
    assert "Traceback" not in err, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert lines, "nothing on stderr"
    return lines[-1]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "unet.ckpt", window=32)


@pytest.fixture
def scene(tmp_path) -> Path:
    return fs.make_site(tmp_path / "scene")


# ---------------------------------------------------------------- refused input: nothing created, changed or lost

def _user_folder(tmp: Path) -> Path:
    """The issue's data-loss case: a folder holding a user's notes and a site."""
    (tmp / "x" / "mysite").mkdir(parents=True)
    (tmp / "x" / "notes.txt").write_text("keep")
    return tmp / "x"


REFUSED = [  # (id, argv with {tmp}/{ckpt}/{scene}, message part)
    ("synth-out-holds-user-files", ["synth", "--out", "{tmp}/x"], "which slidemap synth did not write"),
    ("synth-out-is-a-file", ["synth", "--out", "{tmp}/x/notes.txt"], "exists and is a file"),
    ("synth-scale-zero", ["synth", "--out", "{tmp}/new", "--scale", "0"], "--scale: scale must be positive"),
    ("synth-scale-negative", ["synth", "--out", "{tmp}/new", "--scale", "-1"], "scale must be positive"),
    ("map-threshold-above-1", ["map", "--threshold", "1.5"], "--threshold: must lie in (0, 1), got 1.5"),
    ("map-threshold-negative", ["map", "--threshold", "-0.5"], "--threshold: must lie in (0, 1), got -0.5"),
    ("map-threshold-zero", ["map", "--threshold", "0"], "--threshold: must lie in (0, 1), got 0.0"),
    ("map-threshold-nan", ["map", "--threshold", "nan"], "--threshold: must lie in (0, 1), got nan"),
    ("map-overlap-one", ["map", "--overlap", "1"], "--overlap: must lie in [0, 1), got 1.0"),
    ("map-overlap-negative", ["map", "--overlap", "-0.1"], "--overlap: must lie in [0, 1)"),
    ("map-name-escapes-out", ["map", "--name", "../escaped"], "--name: must be a plain name"),
    ("map-name-with-folder", ["map", "--name", "a/b"], "--name: must be a plain name"),
    ("map-name-hidden", ["map", "--name", ".hidden"], "--name: must be a plain name"),
    ("map-out-is-a-file", ["map", "--out", "{tmp}/x/notes.txt"], "output folder is an existing file"),
    ("map-ckpt-missing", ["map", "--ckpt", "{tmp}/none.ckpt"], "none.ckpt"),
    ("map-ckpt-not-a-checkpoint", ["map", "--ckpt", "{tmp}/x/notes.txt"], "notes.txt"),
    ("map-scene-missing", ["map", "--scene", "{tmp}/nowhere"], "nowhere: scene folder not found"),
    ("map-scene-and-products", ["map", "--s2", "{tmp}/a.SAFE", "--dem", "{tmp}/d.tif"], "not both"),
    ("map-precision-unknown", ["map", "--precision", "16"], "invalid choice"),
    ("describe-root-missing", ["describe", "{tmp}/nowhere"], "nowhere"),
    ("describe-root-is-a-file", ["describe", "{tmp}/x/notes.txt"], "notes.txt"),
    ("describe-no-valid-pixel", ["describe", "{tmp}/blank"], "no pixel is valid"),
    ("describe-inventory-metres-as-lonlat", ["describe", "{tmp}/badinv"], "cannot be longitudes/latitudes"),
    ("describe-float-digital-numbers", ["describe", "{tmp}/floatdn"], "values cannot be surface reflectance"),
    ("map-float-digital-numbers", ["map", "--scene", "{tmp}/floatdn/a"], "add 'scale: 0.0001'"),
    ("baseline-unknown-site", ["baseline", "{tmp}/sites", "--sites", "mars"], "mars"),
    ("baseline-no-valid-pixel", ["baseline", "{tmp}/blank"], "no pixel is valid"),
    ("report-folder-missing", ["report", "{tmp}/nowhere"], "sweep folder not found"),
    ("report-not-a-sweep", ["report", "{tmp}/x"], "no complete run"),
    ("site-out-earlier-site-with-user-files", ["site", "--s2", "{tmp}/none.SAFE", "--dem", "{tmp}/d.tif", "--out",
                                               "{tmp}/sites/a"], "notes.txt, which slidemap site did not write"),
    ("site-products-missing", ["site", "--s2", "{tmp}/none.SAFE", "--dem", "{tmp}/d.tif", "--out", "{tmp}/new"],
     "none.SAFE"),
]


@pytest.mark.parametrize("argv, message", [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_refused_input_is_one_line_and_touches_nothing(capsys, tmp_path, ckpt, argv, message):
    user = _user_folder(tmp_path)
    (fs.make_site(tmp_path / "sites" / "a") / "notes.txt").write_text("keep")
    fs.make_site(tmp_path / "blank" / "a", bands=np.zeros((4, *fs.SHAPE), np.uint16))
    fs.make_site(tmp_path / "floatdn" / "a", bands=fs.constant_bands((500.0, 600.0, 700.0, 3000.0), dtype=np.float32),
                 nodata=None)  # digital numbers stored as floats, no site.yaml
    metres = fs.make_site(tmp_path / "badinv" / "a", labels=None)  # UTM metres in a GeoJSON (= lon/lat)
    fs.write_geojson(metres / "inventory.geojson", [fs.pixel_polygon(fs.s2_transform(), fs.SQUARE_PX)])
    scene = fs.make_site(tmp_path / "scene")
    if argv[0] == "map":  # the given option replaces its default
        base = {"--ckpt": str(ckpt), "--scene": str(scene), "--out": str(tmp_path / "maps")}
        given = dict(zip(argv[1::2], argv[2::2]))
        if "--s2" in given:
            base.update({"--s2": given.pop("--s2"), "--dem": given.pop("--dem")})
        argv = ["map", *[x for k, v in {**base, **given}.items() for x in (k, v)]]
    argv = [a.format(tmp=tmp_path) for a in argv]
    before = snapshot(tmp_path)
    with pytest.raises(SystemExit) if message == "invalid choice" else nullcontext():
        code = main(argv)
        assert code == 2
    out, err = capsys.readouterr()
    line = one_line(err)
    assert message in line and (message == "invalid choice" or line.startswith(f"slidemap {argv[0]}: error: "))
    assert snapshot(tmp_path) == before  # nothing created (no empty --out), changed or lost
    assert (user / "notes.txt").read_text() == "keep"


def test_report_refuses_an_earlier_report_holding_user_files(tmp_path):
    from types import SimpleNamespace

    from slidemap.errors import InputError
    from slidemap.reporting.report import check_out_dir

    out = tmp_path / "report"
    out.mkdir()
    for name in ("report.md", "runs.csv", "fig10_mean_f1_scenario_model.png", "figures.json"):
        (out / name).write_text("earlier report")
    sweep = SimpleNamespace(runs=[], root=tmp_path / "sweep")
    check_out_dir(out, sweep)  # its own earlier output: may be replaced
    (out / "my_notes.md").write_text("keep")
    with pytest.raises(InputError, match="holds my_notes.md, which slidemap report did not write"):
        check_out_dir(out, sweep)


# ---------------------------------------------------------------- map: outputs together, old ones kept on failure

def test_map_into_a_folder_with_an_older_map_and_user_files(capsys, tmp_path, ckpt, scene):
    out = tmp_path / "maps"
    out.mkdir()
    (out / "notes.txt").write_text("keep")
    stale = out / f".scene_binary.tif{TMP_TAG}00000000-1-x.tmp.tif"  # another host's: never judged
    assert main(["map", "--ckpt", str(ckpt), "--scene", str(scene), "--out", str(out), "--name", "old"]) == 0
    stale.write_text("not ours to judge")
    assert main(["map", "--ckpt", str(ckpt), "--scene", str(scene), "--out", str(out)]) == 0
    printed = capsys.readouterr().out.split()[-3:]
    assert printed == [str(out / f"scene{s}") for s in ("_probability.tif", "_binary.tif", "_landslides.gpkg")]
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([stale.name, "notes.txt", *(f"{n}{s}" for n in ("old", "scene")
                                                       for s in ("_probability.tif", "_binary.tif",
                                                                 "_landslides.gpkg", "_probability.qml",
                                                                 "_binary.qml", "_landslides.qml"))])


def test_a_map_that_fails_midway_leaves_the_older_map_whole(capsys, tmp_path, ckpt, scene, monkeypatch):
    out = tmp_path / "maps"
    assert main(["map", "--ckpt", str(ckpt), "--scene", str(scene), "--out", str(out)]) == 0
    capsys.readouterr()
    before = snapshot(out)

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the polygon stage")

    monkeypatch.setattr("slidemap.mapping.maps.write_polygons_streamed", broken)
    assert main(["map", "--ckpt", str(ckpt), "--scene", str(scene), "--out", str(out), "--threshold", "0.3"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("slidemap map: internal error: this is a bug")
    assert snapshot(out) == before and stray(tmp_path) == []


# ---------------------------------------------------------------- signals to real subprocesses

MAP_SCRIPT = """
import sys, time
from pathlib import Path
import slidemap.mapping.maps as maps, slidemap.mapping.mosaic as mosaic
stage, flag = sys.argv[1], Path(sys.argv[2])
def wait(*args, **kwargs):
    flag.write_text("reached")
    time.sleep(120)
if stage == "polygons":
    maps.write_polygons_streamed = wait
else:
    mosaic.predict_tiles = wait
from slidemap.cli import main
sys.exit(main(sys.argv[3:]))
"""


def signalled(cmd: list[str], flag: Path, sig: int, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``cmd``, send ``sig`` once ``flag`` exists, and return the finished process."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + timeout
    while not flag.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert flag.exists(), f"never reached the point to interrupt: {proc.communicate()[1][-2000:]}"
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def map_cmd(stage: str, flag: Path, ckpt: Path, scene: Path, out: Path) -> list[str]:
    return [sys.executable, "-c", MAP_SCRIPT, stage, str(flag), "map", "--ckpt", str(ckpt), "--scene", str(scene),
            "--out", str(out)]


@pytest.mark.parametrize("stage, sig, code", [("polygons", signal.SIGINT, 130), ("mosaic", signal.SIGTERM, 143)],
                         ids=["map-sigint-in-polygon-stage", "map-sigterm-mid-mosaic"])
def test_an_interrupted_map_leaves_the_older_map_and_nothing_stray(capsys, tmp_path, ckpt, scene, stage, sig, code):
    out = tmp_path / "maps"
    assert main(["map", "--ckpt", str(ckpt), "--scene", str(scene), "--out", str(out)]) == 0
    capsys.readouterr()
    before = snapshot(tmp_path)
    flag = tmp_path / "flag"
    done = signalled(map_cmd(stage, flag, ckpt, scene, out), flag, sig, tmp_path)
    flag.unlink()
    assert done.returncode == code and one_line(done.stderr) == "slidemap map: interrupted", done.stderr
    assert snapshot(tmp_path) == before and stray(tmp_path) == []


def test_a_map_interrupted_into_a_new_folder_never_creates_it(tmp_path, ckpt, scene):
    flag = tmp_path / "flag"
    done = signalled(map_cmd("mosaic", flag, ckpt, scene, tmp_path / "new" / "maps"), flag, signal.SIGINT, tmp_path)
    assert done.returncode == 130 and one_line(done.stderr) == "slidemap map: interrupted"
    assert not (tmp_path / "new").exists() and stray(tmp_path) == []


def test_a_killed_maps_temporaries_go_with_the_next_run(capsys, tmp_path, ckpt, scene):
    out = tmp_path / "maps"
    out.mkdir()
    flag = tmp_path / "flag"
    killed = signalled(map_cmd("mosaic", flag, ckpt, scene, out), flag, signal.SIGKILL, tmp_path)
    assert killed.returncode == -signal.SIGKILL and stray(out) != []  # SIGKILL cannot be cleaned up after
    assert main(["map", "--ckpt", str(ckpt), "--scene", str(scene), "--out", str(out)]) == 0
    assert stray(tmp_path) == [] and len(list(out.iterdir())) == 6  # 3 maps and their QGIS styles


def test_synth_interrupted_leaves_no_folder(tmp_path):
    script = ("import sys, time\nfrom pathlib import Path\nimport slidemap.data.synthetic.writer as w\n"
              "real = w._write_site\n"
              "def slow(folder, *a):\n    real(folder, *a)\n    Path(sys.argv[1]).write_text('x')\n"
              "    time.sleep(120)\n"
              "w._write_site = slow\nfrom slidemap.cli import main\nsys.exit(main(sys.argv[2:]))\n")
    flag = tmp_path / "flag"
    done = signalled([sys.executable, "-c", script, str(flag), "synth", "--out", str(tmp_path / "sites"),
                      "--scale", "0.02"], flag, signal.SIGINT, tmp_path)
    assert done.returncode == 130 and one_line(done.stderr) == "slidemap synth: interrupted"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flag"]


def test_synth_replaces_only_an_earlier_synth_output(capsys, tmp_path):
    out = tmp_path / "sites"
    assert main(["synth", "--out", str(out), "--scale", "0.02"]) == 0
    first = json.loads((out / "synthetic.json").read_text())
    assert main(["synth", "--out", str(out), "--scale", "0.02", "--seed", "1"]) == 0  # its own: replaced
    assert json.loads((out / "synthetic.json").read_text())["seed"] == 1 != first["seed"]
    (out / "notes.txt").write_text("keep")
    capsys.readouterr()
    assert main(["synth", "--out", str(out), "--scale", "0.02"]) == 2
    assert "notes.txt, which slidemap synth did not write" in one_line(capsys.readouterr().err)
    assert (out / "notes.txt").read_text() == "keep" and json.loads((out / "synthetic.json").read_text())["seed"] == 1


# ---------------------------------------------------------------- resume of a moved run folder

def test_resume_state_follows_a_moved_run_folder(tmp_path):
    """last.ckpt names its checkpoints by absolute path; after the move they are the run folder's own."""
    import torch
    from pytorch_lightning.callbacks import ModelCheckpoint

    from slidemap.training.identity import relocate_resume_state

    old, new = tmp_path / "old" / "checkpoints", tmp_path / "new" / "checkpoints"
    new.mkdir(parents=True)
    state = {"dirpath": str(old), "best_model_path": str(old / "best.ckpt"), "best_model_score": torch.tensor(0.25),
             "kth_best_model_path": str(old / "best.ckpt"), "kth_value": torch.tensor(0.25),
             "best_k_models": {str(old / "best.ckpt"): torch.tensor(0.25)}, "last_model_path": str(old / "last.ckpt")}
    torch.save({"callbacks": {"ModelCheckpoint{'monitor': 'val/loss'}": state, "EarlyStopping": {"wait_count": 1}},
                "epoch": 0}, new / "last.ckpt")
    assert relocate_resume_state(new / "last.ckpt", new)
    assert not relocate_resume_state(new / "last.ckpt", new)  # already where it lies: left as it is
    moved = torch.load(new / "last.ckpt", weights_only=False)["callbacks"]
    callback = ModelCheckpoint(dirpath=str(new), filename="best", monitor="val/loss")
    callback.load_state_dict(moved["ModelCheckpoint{'monitor': 'val/loss'}"])
    assert callback.best_model_path == str(new.resolve() / "best.ckpt")  # not the old folder's
    assert float(callback.best_model_score) == 0.25  # and the best score is kept (Lightning drops it on a move)
    assert list(callback.best_k_models) == [str(new.resolve() / "best.ckpt")]
    assert moved["EarlyStopping"] == {"wait_count": 1}


# ---------------------------------------------------------------- train.py and eval.py: one validation layer

def hydra_entry(script: str, args: list[str], cwd: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / script), *args], cwd=cwd, env=ENV, capture_output=True,
                          text=True, timeout=timeout)


HYDRA_REFUSED = [  # (id, script, overrides, message)
    ("train-threshold-above-1", "train.py", ["threshold=1.5"], "error: threshold: must lie in (0, 1), got 1.5"),
    ("train-threshold-negative", "train.py", ["threshold=-0.5"], "error: threshold: must lie in (0, 1), got -0.5"),
    ("train-threshold-not-a-number", "train.py", ["threshold=abc"],
     "error: threshold: must be auto or a number in (0, 1)"),
    ("train-scenes-without-root", "train.py", ["data=scenes"], "error: data.root: missing: give the folder"),
    ("train-root-unresolvable", "train.py", ["data=scenes", "data.root=${oc.env:SLIDEMAP_NO_SUCH_VAR}"],
     "error: data.root: "),
    ("train-batch-size-zero", "train.py", ["data.batch_size=0"], "error: data.batch_size: must be an integer >= 1"),
    ("train-seed-negative", "train.py", ["seed=-1"], "error: seed: must be an integer in [0, 4294967295], got -1"),
    ("train-custom-model-without-target", "train.py", ["model=custom"], "error: model.net._target_: missing"),
    ("eval-threshold-above-1", "eval.py", ["ckpt_path=x.ckpt", "threshold=1.5"],
     "error: threshold: must lie in (0, 1), got 1.5"),
    ("eval-threshold-negative", "eval.py", ["ckpt_path=x.ckpt", "threshold=-0.5"],
     "error: threshold: must lie in (0, 1), got -0.5"),
    ("eval-no-checkpoint", "eval.py", [], "error: ckpt_path: no checkpoint given"),
    ("eval-overlap-one", "eval.py", ["ckpt_path=x.ckpt", "overlap=1"], "error: overlap: must lie in [0, 1), got 1"),
    ("eval-batch-size-zero", "eval.py", ["ckpt_path=x.ckpt", "batch_size=0"], "error: batch_size: must be an integer"),
    ("eval-tile-zero", "eval.py", ["ckpt_path=x.ckpt", "tile=0"], "error: tile: must be an integer >= 1"),
]


@pytest.mark.parametrize("script, args, message", [c[1:] for c in HYDRA_REFUSED], ids=[c[0] for c in HYDRA_REFUSED])
def test_hydra_entry_points_refuse_bad_config_in_one_line(tmp_path, script, args, message):
    (tmp_path / "keep.txt").write_text("keep")
    done = hydra_entry(script, ["logger=none"] * (script == "train.py") + args, tmp_path)
    assert done.returncode == 2 and one_line(done.stderr).startswith(message), done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]  # no bare outputs/<date>/<time> folder


@pytest.mark.parametrize("script, args, message", [
    ("eval.py", ["ckpt_path={tmp}/none.ckpt"], "none.ckpt"),
    ("train.py", ["data=scenes", "data.root={tmp}/nowhere", "logger=none"], "nowhere: sites folder not found"),
], ids=["eval-checkpoint-missing", "train-sites-folder-missing"])
def test_a_run_refused_after_start_leaves_no_run_folder(tmp_path, script, args, message):
    """The run folder Hydra made (and the run's run.json) goes too: the corrected command may reuse it.
    (train.py's unsupported window: tests/test_training.py.)"""
    done = hydra_entry(script, [a.format(tmp=tmp_path) for a in args] + [f"hydra.run.dir={tmp_path}/run"], tmp_path)
    assert done.returncode == 2 and message in one_line(done.stderr), done.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_train_interrupted_then_moved_resumes_from_its_own_folder(synthetic_root, tmp_path):
    """Ctrl-C ends train.py with one line and exit 130; the run folder, moved and its original deleted, resumes
    from the checkpoints where it now lives, never from the old absolute path.

    Interrupted after its only epoch (while testing), the resumed run trains no further: the best checkpoint it
    tests is the one recorded in last.ckpt, the old folder's path without the relocation (FileNotFoundError)."""
    first, moved = tmp_path / "a" / "run", tmp_path / "b" / "run"
    args = [f"data.root={synthetic_root}", "data.sites=[china]", "scenario=china", "window=32", "logger=none",
            "model.net.base_filters=8", "trainer.max_epochs=1", "trainer.min_epochs=1",
            "+trainer.limit_train_batches=8", "+trainer.limit_val_batches=2", "+trainer.limit_test_batches=2",
            "trainer.enable_progress_bar=false", "trainer.precision=32-true"]
    last = first / "checkpoints" / "last.ckpt"  # of the only epoch
    done = signalled([sys.executable, str(REPO / "train.py"), *args, f"hydra.run.dir={first}"], last, signal.SIGINT,
                     tmp_path, timeout=300)
    assert done.returncode == 130 and one_line(done.stderr) == "interrupted", done.stderr[-3000:]
    assert not (first / "metrics.json").exists() and stray(tmp_path) == []
    moved.parent.mkdir()
    shutil.move(first, moved)
    shutil.rmtree(tmp_path / "a")
    resumed = hydra_entry("train.py", [*args, f"hydra.run.dir={moved}"], tmp_path, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    metrics = json.loads((moved / "metrics.json").read_text())
    assert metrics["resumed_from"] == str(moved / "checkpoints" / "last.ckpt")
    assert Path(metrics["best_checkpoint"]).parent == (moved / "checkpoints").resolve()
    assert not (tmp_path / "a").exists() and stray(tmp_path) == []
