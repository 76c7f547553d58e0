"""cqr_rasa: contextual query rewriting for Rasa 3.6 bots.

`Rewriter` (no Rasa needed) rewrites a dialogue's last user turn so it stands on its own;
`ContextualQueryRewriter` is the Rasa graph component (`cqr_rasa.ContextualQueryRewriter` in
config.yml). The component is imported lazily so that the model can be used without loading Rasa.
"""
from typing import Any

__version__ = "0.1.0"
__all__ = ["ContextualQueryRewriter", "Rewriter", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "ContextualQueryRewriter":
        from cqr_rasa.plugin.component import ContextualQueryRewriter

        return ContextualQueryRewriter
    if name == "Rewriter":
        from cqr_rasa.rewriter import Rewriter

        return Rewriter
    raise AttributeError(f"module 'cqr_rasa' has no attribute {name!r}")
