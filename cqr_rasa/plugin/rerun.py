"""Re-running the NLU components that precede the rewriter on a rewritten text.

A graph node cannot call other nodes, so the component builds its own small graph runner over the
part of the model's graph it depends on (the node feeding its `messages`), sharing the model
storage. Built in `load`, because the unpacked model directory is gone after loading.
"""
import logging
from typing import Optional

from rasa.core.channels.channel import UserMessage
from rasa.engine.constants import PLACEHOLDER_MESSAGE, PLACEHOLDER_TRACKER
from rasa.engine.graph import ExecutionContext
from rasa.engine.runner.dask import DaskGraphRunner
from rasa.engine.storage.storage import ModelStorage
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.shared.nlu.training_data.message import Message

logger = logging.getLogger(__name__)


class UpstreamNLU:
    """Parses a text with the NLU nodes upstream of the rewriter node."""

    def __init__(self, runner: DaskGraphRunner, target: str) -> None:
        self._runner, self._target = runner, target

    @classmethod
    def build(cls, model_storage: ModelStorage,
              execution_context: ExecutionContext) -> Optional["UpstreamNLU"]:
        """The runner for the rewriter's `messages` input, or None (e.g. on the training graph)."""
        schema, node_name = execution_context.graph_schema, execution_context.node_name
        node = schema.nodes.get(node_name) if schema is not None and node_name else None
        target = node.needs.get("messages") if node is not None else None
        if target is None or target not in schema.nodes:
            return None
        sub_schema = schema.minimal_graph_schema([target])
        context = ExecutionContext(sub_schema, execution_context.model_id,
                                   execution_context.should_add_diagnostic_data,
                                   execution_context.is_finetuning)
        logger.debug("Re-run graph for %s: %s", node_name, sorted(sub_schema.nodes))
        return cls(DaskGraphRunner(sub_schema, model_storage, context), target)

    def parse(self, text: str, original: Message,
              tracker: Optional[DialogueStateTracker]) -> Message:
        """The upstream NLU's message for `text`, keeping the original's id and metadata."""
        message = UserMessage(text=text, message_id=original.get("message_id"),
                              metadata=original.get("metadata"))
        inputs = {PLACEHOLDER_MESSAGE: [message], PLACEHOLDER_TRACKER: tracker}
        return self._runner.run(inputs=inputs, targets=[self._target])[self._target][0]
