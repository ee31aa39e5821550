"""Membrane surfaces: meshes of segmented membranes and their measures (issue 22).

``bilayer.surfaces.api`` is the Python door (meshes and tables, nothing written);
``bilayer.surfaces.files`` writes what ``bilayer mesh`` and ``bilayer measure`` write.
"""

import warnings

# gpytoolbox imports scipy.ndimage.filters (deprecated) when it loads: not the user's concern
warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"gpytoolbox(\.|$)")
