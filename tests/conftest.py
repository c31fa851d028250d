"""Shared pytest fixtures.

``shared_data`` is the real benchmark data folder ``../shared/data`` (relative to the repository
root). Tests that need it are marked ``@pytest.mark.integration``. When the folder is missing
they are skipped on a developer machine, but fail when the ``CI`` environment variable is set, so
that CI can never pass by silently skipping the real-data checks.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def require_shared_data(*parts: str) -> Path:
    """Path of ``../shared/data/<parts>``; skip (or fail under ``CI``) when it does not exist."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        msg = f"benchmark data not found: {path}"
        if os.environ.get("CI"):
            pytest.fail(f"{msg} (CI is set, so missing data is a failure)")
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real benchmark data folder ``../shared/data`` (skip or, under CI, fail when missing)."""
    return require_shared_data()
