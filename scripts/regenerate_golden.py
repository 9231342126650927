"""Rewrite tests/golden/fake_tree.json from the search on the fakes (deliberately, after a reviewed algorithm change).

    python scripts/regenerate_golden.py

tests/test_export.py::test_golden_tree compares against this file and never writes it.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from rain.core.export import dumps  # noqa: E402
from test_export import GOLDEN, fake_record, without_timing  # noqa: E402


def main() -> int:
    data = without_timing(json.loads(dumps(fake_record())))
    GOLDEN.write_text(json.dumps(data, indent=0, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
