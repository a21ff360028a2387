"""Fixtures of the dataset tests (real data folders)."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def drive(shared_data: Path) -> Path:
    """DRIVE's training folder (20 fundus images, vessel masks, field-of-view masks)."""
    return shared_data / "drive" / "training"
