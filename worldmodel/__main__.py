"""`python -m worldmodel …`: the `worldmodel` command where its script is not on the PATH
(a checkout on PYTHONPATH, a machine without `pip install`)."""
import sys

from worldmodel.cli import console_main

sys.exit(console_main())
