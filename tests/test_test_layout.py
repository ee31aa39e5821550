"""The layout of tests/core/: every engine module has its own test file named after it, and every test
file there is named after the module it tests, or is one of a few documented cross-module files.

The rule: ``core/bilayer/<pkg>/.../<module>.py`` is tested in ``tests/core/test_<module>.py``, or in
``test_<pkg>_<module>.py`` (``<pkg>`` being the module's own package, e.g. ``test_synthetic_scene.py``
for ``data/synthetic/scene.py``); where the bare name is not unique in the engine (``config.py``,
``layout.py``, ``settings.py``, ``skeleton.py``) only the second form names it. A top-level module
``core/bilayer/<module>.py`` is tested in ``test_<module>.py``. Packages' ``__init__.py`` and private
modules (``_name.py``) need no file of their own.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENGINE = ROOT / "core" / "bilayer"
TESTS = ROOT / "tests" / "core"

#: Engine modules without a test file of their own, and why.
EXEMPT = {
    "errors.py": "exception classes only; every test that expects an error exercises them",
}

#: Test files that test no single module, and what they test instead.
CROSS_MODULE = {
    "test_default_model.py": "the shipped default model's quality on held-out scenes, phantoms and real crops",
    "test_export_default_model.py": "scripts/export_default_model.py",
    "test_foreign_phantoms.py": "the hand-written phantoms of tests/foreign_phantoms.py",
    "test_layers.py": "the engine as a whole: no module imports an adapter or Scipion",
    "test_recipes.py": "the default model's training recipes in configs/ and scripts/ (not data/synthetic/recipes.py)",
}


def _modules() -> list[Path]:
    """Every engine module that needs a test file, relative to the engine folder."""
    return sorted(path.relative_to(ENGINE) for path in ENGINE.rglob("*.py")
                  if not any(part.startswith("_") for part in path.relative_to(ENGINE).parts))


def _test_names(module: Path, unique: bool) -> list[str]:
    """The names the rule allows for ``module``'s test file, preferred first."""
    if len(module.parts) == 1:
        return [f"test_{module.stem}.py"]
    qualified = f"test_{module.parts[-2]}_{module.stem}.py"
    return [f"test_{module.stem}.py", qualified] if unique else [qualified]


def _allowed() -> dict[Path, list[str]]:
    modules = _modules()
    counts = Counter(module.stem for module in modules)
    return {module: _test_names(module, counts[module.stem] == 1) for module in modules}


def _test_files() -> set[str]:
    return {path.name for path in TESTS.glob("test_*.py")}


def test_every_engine_module_has_its_test_file():
    files = _test_files() - set(CROSS_MODULE)
    missing, doubled = [], []
    for module, names in _allowed().items():
        found = [name for name in names if name in files]
        if module.as_posix() in EXEMPT:
            assert not found, f"{module} is exempt but has {found}: remove it from EXEMPT"
        elif not found:
            missing.append(f"{module} (tests/core/{names[0]})")
        elif len(found) > 1:
            doubled.append(f"{module}: {', '.join(found)}")
    assert missing == [], "engine modules without their test file: " + "; ".join(missing)
    assert doubled == [], "engine modules with two test files, keep one: " + "; ".join(doubled)
    stale = sorted(set(EXEMPT) - {module.as_posix() for module in _modules()})
    assert stale == [], f"exemptions of modules that no longer exist: {stale}"


def test_every_test_file_is_named_after_a_module_or_documented():
    owners: dict[str, list[str]] = {}
    for module, names in _allowed().items():
        for name in names:
            owners.setdefault(name, []).append(module.as_posix())
    ambiguous = {name: modules for name, modules in owners.items() if len(modules) > 1}
    assert ambiguous == {}, f"test file names that fit several modules: {ambiguous}"
    files = _test_files()
    strays = sorted(files - set(owners) - set(CROSS_MODULE))
    assert strays == [], ("test files named after no engine module: " + ", ".join(strays)
                          + "; name each after the module it tests (split it if it tests several), or document it "
                            "in CROSS_MODULE")
    stale = sorted(set(CROSS_MODULE) - files)
    assert stale == [], f"CROSS_MODULE lists files that no longer exist: {stale}"


def test_the_rule_names_files_as_the_repository_does():
    allowed = _allowed()
    assert allowed[Path("losses/config.py")] == ["test_losses_config.py"]
    assert allowed[Path("postprocess/skeleton.py")] == ["test_postprocess_skeleton.py"]
    assert allowed[Path("data/synthetic/scene.py")] == ["test_scene.py", "test_synthetic_scene.py"]
    assert allowed[Path("settings.py")] == ["test_settings.py"]
    assert allowed[Path("train/settings.py")] == ["test_train_settings.py"]
    assert allowed[Path("cli_segment.py")] == ["test_cli_segment.py"]
    assert Path("errors.py") in allowed and not any(m.name.startswith("_") for m in allowed)
