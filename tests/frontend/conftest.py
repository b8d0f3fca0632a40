"""The browser views write uploads under VAR_DIR: every test here gets its own (tests/fixtures/web.py)."""

import pytest


@pytest.fixture(autouse=True)
def uploads_in_tmp(var_dir):
    """Each view test's uploads land in its own tmp_path, so a test can list exactly what was written."""
