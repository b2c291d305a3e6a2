"""The repository's root, the benchmarks' results folder, and its top-level scripts as modules, for the benchmarks
and the tests.

``train.py``, ``eval.py`` and ``test.py`` sit at the root, outside any package, and ``import test`` finds the
standard library's package: the scripts are loaded by path instead, each once, under a private module name.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "benchmarks" / "results"  # the committed benchmark records


def load_script(name: str) -> ModuleType:
    """The script ``REPO_ROOT/<name>.py`` (``name``: ``"train"``, ``"eval"`` or ``"test"``) as the module
    ``_script_<name>``, loaded on the first call and the same module object afterwards."""
    module_name = f"_script_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, REPO_ROOT / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # before running it, as an import does: pickling finds its functions
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module
