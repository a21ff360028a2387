"""Helpers for the dataset tests: small folders of links to real files, built in tmp_path."""
from __future__ import annotations

from pathlib import Path

import pytest


def link_files(files: list[Path], folder: Path) -> Path:
    """Symlink ``files`` into ``folder`` (created) under their own names; returns ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        (folder / f.name).symlink_to(f)
    return folder


@pytest.fixture
def drive(shared_data: Path) -> Path:
    """DRIVE's training folder (20 fundus images, vessel masks, field-of-view masks)."""
    return shared_data / "drive" / "training"
