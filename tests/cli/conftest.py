"""Fixtures of the command-line tests."""
from __future__ import annotations

import os

import pytest


@pytest.fixture
def no_settings(tmp_path, monkeypatch):
    """Run in an empty directory without OSLOSCOPE_* variables: built-in default settings."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("OSLOSCOPE_"):
            monkeypatch.delenv(name)
    return tmp_path
