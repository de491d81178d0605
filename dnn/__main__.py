"""`python -m dnn` runs the command line."""

from dnn.runtime.cli import entry

entry()
