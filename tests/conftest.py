"""Fixtures every suite shares (suite-specific ones live in each suite's conftest)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """The knowledge base file of a test."""
    return tmp_path / "kb.db"
