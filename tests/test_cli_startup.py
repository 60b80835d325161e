"""``slidemap --help`` and argument errors answer at once: building the parser imports none of the heavy libraries
(torch, segmentation-models-pytorch, rasterio, scipy); each command imports what it needs when it runs. The time
itself is measured in benchmarks/README.md, not here."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "segmentation_models_pytorch", "rasterio", "scipy", "pytorch_lightning", "matplotlib")


def _imported_after(code: str) -> set[str]:
    probe = f"import sys\n{code}\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


def test_building_the_parser_imports_no_heavy_library():
    assert _imported_after("import slidemap.cli; slidemap.cli.build_parser()") == set()


def test_an_option_error_is_answered_before_any_heavy_import():
    code = ("import slidemap.cli\ntry:\n    slidemap.cli.main(['map', '--ckpt', 'x', '--scene', 'y', '--out', 'z', "
            "'--threshold', '2'])\nexcept SystemExit:\n    pass")
    assert _imported_after(code) == set()


def test_the_paper_models_do_not_import_smp():
    assert "segmentation_models_pytorch" not in _imported_after("import slidemap.models; slidemap.models.UNet")
    assert "segmentation_models_pytorch" in _imported_after("import slidemap.models; slidemap.models.SmpModel")
