"""Regression: a checkout in a 0700 directory (mktemp -d) hid the venv from other users."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.paths import ensure_traversable


@pytest.mark.skipif(os.geteuid() != 0, reason="only root opens other users' directories")
def test_private_ancestors_become_searchable_not_readable(tmp_path: Path) -> None:
    private = tmp_path / "private"
    target = private / "a" / "b" / "bin"
    target.parent.mkdir(parents=True)
    target.write_text("x")
    private.chmod(0o700)
    ensure_traversable(target)
    for d in (private, private / "a", private / "a" / "b"):
        assert d.stat().st_mode & 0o011 == 0o011
    assert private.stat().st_mode & 0o004 == 0  # search only: others still cannot list it
