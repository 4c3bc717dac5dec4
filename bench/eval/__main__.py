"""``python -m bench.eval``: run the evaluation set (see ``bench/eval/cli.py``)."""

import sys

from bench.eval.cli import main

sys.exit(main())
