"""The files the library reads at run time, shipped inside the package (so an installed `rain` finds them):
the few-shot generation prompt, the judge's few-shot examples per criterion, the judge-scale calibration set and
the judge-check sets. assets/ keeps what only the app and the docs use (images, recorded trees, results)."""
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent
