"""The package version, in one place (read by setup.py and stamped into every output)."""

__version__ = "0.1.0"
