"""The RELION adapter package ships in the same distribution as the engine."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import bilayer


def test_relion_package_is_importable_from_the_bilayer_distribution():
    import bilayer_relion

    assert bilayer_relion.__version__ == bilayer.__version__
    assert Path(bilayer_relion.__file__).parent.name == "bilayer_relion"
    assert metadata.version("bilayer") == bilayer.__version__
