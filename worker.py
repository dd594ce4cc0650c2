"""Worker entry point: `python worker.py`."""

import os
import sys

from coffeebuddy.entry import run_worker

if __name__ == "__main__":
    sys.exit(run_worker(os.environ))
