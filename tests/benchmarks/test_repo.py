"""benchmarks.repo: the repository's root and its scripts loaded by path, once each."""

from __future__ import annotations

import sys

import pytest

from benchmarks.repo import REPO_ROOT, load_script


def test_a_script_loads_once_by_path_under_a_private_name() -> None:
    script = load_script("test")
    assert script is load_script("test") and script.__name__ == "_script_test"
    assert script.__file__ == str(REPO_ROOT / "test.py") and callable(script.main)  # not the standard library's test


def test_a_missing_script_raises_and_leaves_no_module_behind() -> None:
    with pytest.raises(FileNotFoundError, match="nowhere.py"):
        load_script("nowhere")
    assert "_script_nowhere" not in sys.modules
