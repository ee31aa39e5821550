"""Names the plugin shares: its Scipion variables and the citation key of the method.

The variables are read from the environment or Scipion's config file (``scipion3 config
-p bilayer_scipion`` shows them); they say where the engine runs, never how it computes.
"""

from __future__ import annotations

__all__ = [
    "BILAYER_COMMAND_VAR",
    "BILAYER_MODEL_VAR",
    "CITATION_MEMBRAIN_V2",
]

#: The command that runs the engine, split like a shell line. Empty (the default): this
#: Python interpreter with ``-m bilayer``, so the engine is the one installed beside the
#: plugin. A site that keeps Bilayer in its own environment sets e.g.
#: ``/opt/bilayer/bin/bilayer`` or ``conda run -n bilayer bilayer``.
BILAYER_COMMAND_VAR = "BILAYER_COMMAND"

#: A checkpoint used when a protocol asks for "the default model". Empty (the default):
#: the model embedded in the engine's package, so nothing is downloaded at install time.
BILAYER_MODEL_VAR = "BILAYER_MODEL"

#: Key of the MemBrain v2 paper in :mod:`bilayer_scipion.bibtex`.
CITATION_MEMBRAIN_V2 = "Lamm2024"
