"""Where the e2e screenshots go (no browser): a test run must not rewrite the tracked docs/screenshots."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from tests.fixtures.browser import DOCS_SCREENSHOTS, screenshots_dir


def test_an_ordinary_run_writes_its_screenshots_to_a_temporary_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("ACCRETE_UPDATE_SCREENSHOTS", raising=False)

    assert screenshots_dir(tmp_path) == tmp_path / "screenshots"


def test_a_zero_is_an_ordinary_run(monkeypatch, tmp_path):
    monkeypatch.setenv("ACCRETE_UPDATE_SCREENSHOTS", "0")

    assert screenshots_dir(tmp_path) == tmp_path / "screenshots"


def test_accrete_update_screenshots_1_overwrites_the_docs_pictures(monkeypatch, tmp_path):
    monkeypatch.setenv("ACCRETE_UPDATE_SCREENSHOTS", "1")

    assert screenshots_dir(tmp_path) == DOCS_SCREENSHOTS
    assert DOCS_SCREENSHOTS.parts[-2:] == ("docs", "screenshots") and (DOCS_SCREENSHOTS.parent.parent / "tests").is_dir()


def test_a_value_that_is_not_a_boolean_is_refused_naming_it(monkeypatch, tmp_path):
    monkeypatch.setenv("ACCRETE_UPDATE_SCREENSHOTS", "please")

    with pytest.raises(ImproperlyConfigured, match="ACCRETE_UPDATE_SCREENSHOTS='please' is not a boolean"):
        screenshots_dir(tmp_path)
