"""``python -m reference_server``: run the reference job server."""

import sys

from reference_server.cli import main

sys.exit(main())
