import sys

from gearspec.cli import main

sys.exit(main())
