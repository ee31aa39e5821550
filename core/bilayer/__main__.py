"""``python -m bilayer`` runs the ``bilayer`` command."""

import sys

from bilayer.cli import main

if __name__ == "__main__":
    sys.exit(main())
