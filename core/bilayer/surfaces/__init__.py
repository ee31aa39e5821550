"""Membrane surfaces: meshes of segmented membranes and their measures (issue 22)."""
