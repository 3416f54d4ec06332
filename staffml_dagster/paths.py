"""Where the project reads and writes on disk. ``STAFFML_DATA_DIR`` moves the outputs."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    return Path(os.environ.get("STAFFML_DATA_DIR", PROJECT_ROOT / "data"))


def warehouse_dir() -> Path:
    return data_dir() / "warehouse"


def reports_dir() -> Path:
    return data_dir() / "reports"


def assets_dir() -> Path:
    return Path(os.environ.get("STAFFML_ASSETS_DIR", PROJECT_ROOT / "assets"))
