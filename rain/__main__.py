"""`python -m rain`: see rain/tools/cli.py."""
import sys

from rain.tools.cli import main

sys.exit(main())
