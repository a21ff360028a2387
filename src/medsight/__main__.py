"""``python -m medsight`` runs the command line."""
import sys

from medsight.cli import main

sys.exit(main())
