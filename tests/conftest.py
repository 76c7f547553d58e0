"""Shared test settings and fixtures: no telemetry, the read-only shared data, and the example
bot trained with the real `rasa train` once per session, with and without the rewriter."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("RASA_TELEMETRY_ENABLED", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED_CQR = REPO.parent / "shared" / "data" / "cqr" / "cqr_kvret_dev_public.json"
EXAMPLE_BOT = REPO / "example_bot"
RASA = str(Path(sys.executable).with_name("rasa"))
REWRITER = "cqr_rasa.ContextualQueryRewriter"


@pytest.fixture(scope="session")
def cqr_dev_path() -> Path:
    if not SHARED_CQR.is_file():
        pytest.skip(f"{SHARED_CQR} not present")
    return SHARED_CQR


def copy_bot(target: Path, with_rewriter: bool = True) -> Path:
    """A copy of the example bot's project files (not its models), optionally without rewriter."""
    shutil.copytree(EXAMPLE_BOT, target, ignore=shutil.ignore_patterns("models", ".rasa", "tests"))
    if not with_rewriter:
        config_path = target / "config.yml"
        config = yaml.safe_load(config_path.read_text())
        config["pipeline"] = [c for c in config["pipeline"] if c["name"] != REWRITER]
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    return target


def rasa_train(bot_dir: Path) -> Path:
    """Runs `rasa train` in `bot_dir`; returns the model archive."""
    done = subprocess.run([RASA, "train", "--fixed-model-name", "model"], cwd=bot_dir,
                          capture_output=True, text=True, timeout=1200)
    model = bot_dir / "models" / "model.tar.gz"
    assert done.returncode == 0 and model.is_file(), done.stdout[-3000:] + done.stderr[-3000:]
    return model


@pytest.fixture(scope="session")
def example_bot_dir(tmp_path_factory) -> Path:
    return copy_bot(tmp_path_factory.mktemp("example") / "bot")


@pytest.fixture(scope="session")
def example_model(example_bot_dir) -> Path:
    return rasa_train(example_bot_dir)


@pytest.fixture(scope="session")
def example_model_without_rewriter(tmp_path_factory) -> Path:
    return rasa_train(copy_bot(tmp_path_factory.mktemp("plain") / "bot", with_rewriter=False))
