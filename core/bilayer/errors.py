"""The one exception family of Bilayer.

Every error a user can cause (a bad file, a bad option, an unwritable folder) is a
:class:`BilayerError`. Its message is one line that names the file or value at fault and
says how to fix it; the command line prints exactly that line and exits with status 2.
Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "BilayerError",
    "BilayerWarning",
    "ConfigError",
    "InputFileError",
    "OutputError",
    "PreflightError",
    "VoxelSizeError",
]


class BilayerError(Exception):
    """Base class of every error a user can cause; the message names the file and the fix."""


class InputFileError(BilayerError):
    """An input file is missing, unreadable, not the expected format, or holds bad data."""


class VoxelSizeError(InputFileError):
    """A volume has no usable voxel size (0, missing or not finite) and none was given."""


class OutputError(BilayerError):
    """An output cannot be written: the folder is not writable, or the file would clobber
    an input or an existing file that was not meant to be replaced."""


class ConfigError(BilayerError, ValueError):
    """An option, parameter or configuration value is out of range or inconsistent."""


class PreflightError(BilayerError):
    """A run that cannot start; ``problems`` holds one line per problem, naming the file and the fix."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        more = f" (and {len(self.problems) - 1} more problem(s))" if len(self.problems) > 1 else ""
        super().__init__(f"{self.problems[0]}{more}")


class BilayerWarning(UserWarning):
    """Something was read or done that works but deserves the user's attention
    (a legacy MRC header, a suspicious voxel size)."""
