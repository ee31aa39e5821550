"""MemBrain-pick 0.0.9's virtualenv beside the project (``bench/.venvs/membrain-pick-0.0.9``).

Built on first use like MemBrain-seg's (:mod:`_membrain_env`): ``python -m venv`` and
``pip install -c <torch pin> membrain-pick==0.0.9 click``. The torch pin keeps pip on the local CPU
wheel (membrain-pick depends on membrain-seg, which depends on torch); ``click`` is imported by
membrain-seg without being declared. membrain-pick also pulls pyvista, vtk, pyacvd, PyQt5,
potpourri3d and robust-laplacian, and pins ``scipy < 1.12.1``. Its meshing is imported headless
(``QT_QPA_PLATFORM=offscreen``); nothing is drawn.

If the install fails, :func:`ensure_membrain_pick_venv` returns the reason (pip's last lines) instead of
raising, so that the benchmark can go on with Bilayer alone and say why.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from _membrain_env import BENCH_DIR, TORCH_PIN, run_measured, tail

__all__ = ["MEMBRAIN_PICK_VERSION", "PICK_ENV", "PICK_VENV_DIR", "ensure_membrain_pick_venv", "pick_python"]

MEMBRAIN_PICK_VERSION = "0.0.9"
PICK_VENV_DIR = BENCH_DIR / ".venvs" / f"membrain-pick-{MEMBRAIN_PICK_VERSION}"
#: Environment of every MemBrain-pick child: no display, no FutureWarnings in the logs.
PICK_ENV = {"QT_QPA_PLATFORM": "offscreen", "PYTHONWARNINGS": "ignore::FutureWarning"}
_CHECK = (
    "import importlib.metadata as m, torch, membrain_pick.mesh_projections.mesh_projection; "
    "print(m.version('membrain-pick'), m.version('membrain-seg'), torch.__version__, m.version('pyvista'), "
    "m.version('vtk'), m.version('scipy'))"
)
_VERSION_KEYS = ("membrain_pick", "membrain_seg", "torch", "pyvista", "vtk", "scipy")


def pick_python() -> Path:
    """The interpreter of MemBrain-pick's virtualenv (it may not exist yet)."""
    return PICK_VENV_DIR / "bin" / "python"


def ensure_membrain_pick_venv(log_dir: Path) -> dict[str, str]:
    """Build MemBrain-pick's virtualenv unless it already works; its versions, or why it could not.

    Args:
        log_dir: where ``membrain_pick_venv.log`` (the venv and pip output) is written.

    Returns:
        ``{"membrain_pick": ..., "membrain_seg": ..., "torch": ..., "pyvista": ..., "vtk": ..., "scipy": ...,
        "python": path}`` when it imports; ``{"error": "<what failed and pip's last lines>", "log": path}``
        otherwise (remove the folder to try again).
    """
    log = log_dir / "membrain_pick_venv.log"
    python = pick_python()
    if python.exists() and _import_check(python, log) == 0:
        return _versions(python)
    PICK_VENV_DIR.parent.mkdir(parents=True, exist_ok=True)
    print(f"building MemBrain-pick {MEMBRAIN_PICK_VERSION}'s virtualenv in {PICK_VENV_DIR} (log: {log}) ...",
          file=sys.stderr, flush=True)
    made = run_measured([sys.executable, "-m", "venv", "--clear", PICK_VENV_DIR], log)
    if made.returncode != 0:
        return {"error": f"python -m venv failed:\n{tail(log)}", "log": str(log)}
    constraints = PICK_VENV_DIR / "constraints.txt"
    constraints.write_text(TORCH_PIN + "\n")
    install = [python, "-m", "pip", "install", "-c", constraints, f"membrain-pick=={MEMBRAIN_PICK_VERSION}", "click"]
    ran = run_measured(install, log)
    if ran.returncode != 0:
        return {"error": f"pip install membrain-pick=={MEMBRAIN_PICK_VERSION} (with {TORCH_PIN}) failed, exit "
                         f"{ran.returncode} after {ran.wall_s:.0f} s:\n{tail(log, 25)}", "log": str(log)}
    if _import_check(python, log) != 0:
        return {"error": f"membrain-pick installed but does not import:\n{tail(log, 25)}", "log": str(log)}
    return _versions(python)


def _import_check(python: Path, log: Path) -> int:
    return run_measured([python, "-c", _CHECK], log, env=PICK_ENV).returncode


def _versions(python: Path) -> dict[str, str]:
    import os

    done = subprocess.run([str(python), "-c", _CHECK], check=False, capture_output=True, text=True,
                          env=dict(os.environ, **PICK_ENV))
    values = done.stdout.strip().splitlines()[-1].split() if done.returncode == 0 and done.stdout.strip() else []
    if len(values) != len(_VERSION_KEYS):
        return {"error": f"membrain-pick's import check printed no versions:\n{done.stderr[-2000:]}"}
    return {**dict(zip(_VERSION_KEYS, values, strict=True)), "python": str(python)}
