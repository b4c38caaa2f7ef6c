"""``python -m fedc`` runs the fedc command line."""

import sys

from fedc.cli import main

sys.exit(main())
