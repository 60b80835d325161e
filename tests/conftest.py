"""Shared session fixtures: the built-in synthetic sites are generated once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The three synthetic sites at the default scale (0.1) and seed (0), written once (~2 s)."""
    from slidemap.data.synthetic import ensure_synthetic

    return ensure_synthetic(tmp_path_factory.mktemp("synthetic") / "sites", scale=0.1, seed=0)
