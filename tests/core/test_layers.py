"""The engine stands alone: it never imports the adapters or Scipion (DESIGN.md §1)."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import bilayer

FORBIDDEN = ("pyworkflow", "pwem", "tomo", "bilayer_scipion", "bilayer_relion")


def _engine_modules() -> list[str]:
    return [m.name for m in pkgutil.walk_packages(bilayer.__path__, prefix="bilayer.")]


def test_no_engine_module_imports_an_adapter_or_scipion():
    offenders = []
    for path in Path(bilayer.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert offenders == []


def test_importing_every_engine_module_loads_no_adapter():
    modules = _engine_modules()
    assert "bilayer.io.mrc" in modules and "bilayer.cli" in modules
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        f"print(sorted(k for k in sys.modules if k.split('.')[0] in {FORBIDDEN!r}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
