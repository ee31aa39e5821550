"""Reading and writing tomograms: MRC volumes with voxel size and origin, written atomically."""

from bilayer.io.atomic import (
    OutputGroup,
    atomic_open,
    check_output_path,
    ensure_output_dir,
    file_identity,
    file_sha256,
    output_group,
)
from bilayer.io.mrc import MRC_SUFFIXES, read_header, read_tomogram, read_volume
from bilayer.io.mrc_writer import HEADER_BYTES, VolumeWriter, open_volume_writer, output_dtype, write_volume
from bilayer.io.naming import OUTPUT_SUFFIXES, output_name, output_paths
from bilayer.io.volume import PLAUSIBLE_VOXEL_SIZE, Volume, as_voxel_size, check_plausible_voxel_size

__all__ = [
    "HEADER_BYTES",
    "MRC_SUFFIXES",
    "OUTPUT_SUFFIXES",
    "PLAUSIBLE_VOXEL_SIZE",
    "OutputGroup",
    "Volume",
    "VolumeWriter",
    "as_voxel_size",
    "atomic_open",
    "check_output_path",
    "check_plausible_voxel_size",
    "ensure_output_dir",
    "file_identity",
    "file_sha256",
    "open_volume_writer",
    "output_dtype",
    "output_group",
    "output_name",
    "output_paths",
    "read_header",
    "read_tomogram",
    "read_volume",
    "write_volume",
]
