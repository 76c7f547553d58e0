"""The package installs, registers its component with Rasa and keeps Rasa out of the model code."""
import subprocess
import sys
from pathlib import Path


def test_import_exposes_public_names():
    import cqr_rasa

    assert set(cqr_rasa.__all__) >= {"ContextualQueryRewriter", "Rewriter"}
    assert cqr_rasa.Rewriter.__name__ == "Rewriter"


def test_model_code_does_not_import_rasa():
    code = ("import sys, cqr_rasa, cqr_rasa.rewriter, cqr_rasa.training, cqr_rasa.evaluation, "
            "cqr_rasa.readers, cqr_rasa.commands, cqr_rasa.cli; "
            "print('rasa' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_component_is_registered_under_config_name():
    from rasa.engine.recipes.default_recipe import DefaultV1Recipe

    registered = DefaultV1Recipe._from_registry("cqr_rasa.ContextualQueryRewriter")
    assert registered.clazz.__name__ == "ContextualQueryRewriter"
    assert registered.is_trainable
    assert DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER in registered.types


def test_console_script_help():
    script = Path(sys.executable).with_name("cqr-rasa")
    out = subprocess.run([str(script), "--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    for command in ("train", "evaluate", "benchmark"):
        assert command in out.stdout


def test_readme_config_table_matches_the_component():
    import re

    from cqr_rasa.plugin.component import ContextualQueryRewriter

    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    table = readme.split("### Config keys", 1)[1].split("\n\n", 2)[1]
    rows = dict(re.findall(r"^\| `(\w+)` \| `([^`]*)` \|", table, flags=re.M))
    defaults = ContextualQueryRewriter.get_default_config()
    assert set(rows) == set(defaults)
    for key, value in defaults.items():
        spelled = ("null" if value is None else str(value).lower() if isinstance(value, bool)
                   else str(value))
        assert rows[key] == spelled, key
