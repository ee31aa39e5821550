"""The README's quick start is exactly two commands, and CI runs the second one verbatim."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _marked_command(marker: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(rf"<!-- {marker} -->\s*```bash\n(.+?)\n```", text, re.S)
    assert match, f"README.md has no bash block after <!-- {marker} -->"
    lines = [line for line in match.group(1).splitlines() if line.strip()]
    assert len(lines) == 1, f"the {marker} must be one command line"
    return lines[0].strip()


def test_ci_runs_the_readme_test_command():
    command = _marked_command("test-command")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert command in [line.strip() for line in ci]
    assert "pytest" in command and command.startswith("pip install torch==2.13.0 ")


def test_main_command_installs_then_runs_bilayer():
    command = _marked_command("main-command")
    install, _, run = command.partition(" && ")
    assert install.startswith("pip install torch==2.13.0 ")
    assert run.startswith("bilayer ")
    assert "bilayer segment " in run and "--model" not in run  # the embedded default model
