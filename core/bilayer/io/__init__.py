"""Reading and writing tomograms: MRC volumes with voxel size and origin, written atomically."""

from bilayer.io.atomic import atomic_open, check_output_path, ensure_output_dir
from bilayer.io.mrc import MRC_SUFFIXES, read_header, read_volume
from bilayer.io.mrc_writer import VolumeWriter, open_volume_writer, output_dtype, write_volume
from bilayer.io.volume import Volume, as_voxel_size

__all__ = [
    "MRC_SUFFIXES",
    "Volume",
    "VolumeWriter",
    "as_voxel_size",
    "atomic_open",
    "check_output_path",
    "ensure_output_dir",
    "open_volume_writer",
    "output_dtype",
    "read_header",
    "read_volume",
    "write_volume",
]
