"""Everything that imports rasa: the graph component and its helpers."""
