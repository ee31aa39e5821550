"""Bilayer: membrane segmentation for cryo-electron tomograms (the MemBrain v2 method).

The engine behind the ``bilayer`` command, the Scipion plugin and the RELION External jobs.
Arrays are (z, y, x), voxel sizes are in Å, labels are 0 background, 1 membrane, 2 ignore.
"""

from bilayer._version import __version__
from bilayer.api import segment
from bilayer.errors import BilayerError, BilayerWarning
from bilayer.io import Volume, read_volume, write_volume

__all__ = ["BilayerError", "BilayerWarning", "Volume", "__version__", "preprocess_tomogram", "read_volume", "segment",
           "write_volume"]


def __getattr__(name: str) -> object:
    """``preprocess_tomogram`` loads on first use (it brings scipy's Fourier transforms)."""
    if name == "preprocess_tomogram":
        from bilayer.preprocess.steps import preprocess_tomogram

        return preprocess_tomogram
    raise AttributeError(f"module 'bilayer' has no attribute {name!r}")
