"""The Rasa graph component that rewrites the user message from the conversation's context."""
from typing import Any, Dict, List, Optional, Text

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER, is_trainable=True)
class ContextualQueryRewriter(GraphComponent):
    """Rewrites the user message so every reference to earlier turns is spelled out."""

    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        return {}

    @classmethod
    def create(cls, config: Dict[Text, Any], model_storage: ModelStorage, resource: Resource,
               execution_context: ExecutionContext) -> "ContextualQueryRewriter":
        return cls()

    def train(self, training_data: TrainingData) -> Resource:
        raise NotImplementedError

    def process(self, messages: List[Message],
                tracker: Optional[DialogueStateTracker] = None) -> List[Message]:
        return messages
