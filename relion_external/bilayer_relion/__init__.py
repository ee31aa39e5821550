"""Bilayer as RELION External jobs: programs that translate STAR/MRC into engine calls.

The job programs arrive with a later issue (#8); the package exists now so that the
distribution's layout is fixed from the start. It holds no numerical code: every number
comes from the ``bilayer`` engine.
"""

from bilayer import __version__

__all__ = ["__version__"]
