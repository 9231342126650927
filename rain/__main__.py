"""`python -m rain`: see rain/cli.py."""
import sys

from rain.cli import main

sys.exit(main())
