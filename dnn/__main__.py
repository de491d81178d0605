"""`python -m dnn` runs the command line."""

import sys

from dnn.runtime.cli import main

sys.exit(main())
