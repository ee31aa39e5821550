"""Bilayer as a Scipion plugin: protocols that translate Scipion objects into engine calls.

The protocols arrive with a later issue (#7); the package exists now so that the
distribution's layout and its ``pyworkflow.plugin`` entry point are fixed from the start.
It holds no numerical code: every number comes from the ``bilayer`` engine.
"""

from bilayer import __version__

__all__ = ["__version__"]
