"""Shared test settings: no telemetry, and where the read-only shared data lives."""
import os
from pathlib import Path

import pytest

os.environ.setdefault("RASA_TELEMETRY_ENABLED", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED_CQR = REPO.parent / "shared" / "data" / "cqr" / "cqr_kvret_dev_public.json"


@pytest.fixture(scope="session")
def cqr_dev_path() -> Path:
    if not SHARED_CQR.is_file():
        pytest.skip(f"{SHARED_CQR} not present")
    return SHARED_CQR
