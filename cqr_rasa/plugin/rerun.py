"""Re-running the NLU components that precede the rewriter on a rewritten text.

A graph node cannot call other nodes, so the component finds the nodes it depends on (everything
feeding its `messages`) and calls them in dependency order. Rasa's runner builds a model's nodes
in schema order, the NLU before the rewriter, so when the rewriter loads, the runner's own node
objects exist: they are found among the live objects by their model storage (the same object for
every node of one loaded model), name and class, and shared, which spares a second copy of the
NLU's weights (about 350 MB on the example bot). Where they are not found (the component loaded
outside a runner), it builds its own copies over the same model storage. Either way in `load`,
because the unpacked model directory is gone after loading.

Rasa's `DaskGraphRunner` would run the same nodes, but it rebuilds its task graph and formats its
inputs into a debug message on every run: 1.1 ms of a 12.8 ms re-parse on the example bot.
"""
import gc
import logging
from typing import Any, Dict, List, Optional, Tuple

from rasa.core.channels.channel import UserMessage
from rasa.engine.constants import PLACEHOLDER_MESSAGE, PLACEHOLDER_TRACKER
from rasa.engine.graph import ExecutionContext, GraphNode, GraphSchema
from rasa.engine.storage.storage import ModelStorage
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.shared.nlu.training_data.message import Message

logger = logging.getLogger(__name__)


class UpstreamNLU:
    """Parses a text with the NLU nodes upstream of the rewriter node."""

    def __init__(self, steps: List[Tuple[str, GraphNode, List[str]]], target: str,
                 shared: bool) -> None:
        self._steps, self._target = steps, target  # (node name, node, names it reads)
        self.shared = shared  # whether the nodes are the runner's own (else copies)

    @classmethod
    def build(cls, model_storage: ModelStorage,
              execution_context: ExecutionContext) -> Optional["UpstreamNLU"]:
        """The nodes behind the rewriter's `messages` input, or None (e.g. on the training
        graph)."""
        schema, node_name = execution_context.graph_schema, execution_context.node_name
        node = schema.nodes.get(node_name) if schema is not None and node_name else None
        target = node.needs.get("messages") if node is not None else None
        if target is None or target not in schema.nodes:
            return None
        sub_schema = schema.minimal_graph_schema([target])
        order = _dependency_order(sub_schema)
        nodes = _runner_nodes(model_storage, sub_schema)
        shared = len(nodes) == len(order)
        if not shared:
            context = ExecutionContext(sub_schema, execution_context.model_id,
                                       execution_context.should_add_diagnostic_data,
                                       execution_context.is_finetuning)
            nodes = {name: GraphNode.from_schema_node(name, sub_schema.nodes[name], model_storage,
                                                      context) for name in order}
        logger.debug("Re-run nodes for %s (%s): %s", node_name,
                     "the runner's" if shared else "own copies", order)
        return cls([(name, nodes[name], list(sub_schema.nodes[name].needs.values()))
                    for name in order], target, shared)

    def parse(self, text: str, original: Message,
              tracker: Optional[DialogueStateTracker]) -> Message:
        """The upstream NLU's message for `text`, keeping the original's id and metadata."""
        message = UserMessage(text=text, message_id=original.get("message_id"),
                              metadata=original.get("metadata"))
        # as in Rasa's runner, each node gets (name, output) pairs, or a bare name it lacks
        outputs: Dict[str, Any] = {PLACEHOLDER_MESSAGE: (PLACEHOLDER_MESSAGE, [message]),
                                   PLACEHOLDER_TRACKER: (PLACEHOLDER_TRACKER, tracker)}
        for name, node, needs in self._steps:
            outputs[name] = node(*(outputs.get(need, need) for need in needs))
        return outputs[self._target][1][0]


def _runner_nodes(model_storage: ModelStorage, schema: GraphSchema) -> Dict[str, GraphNode]:
    """The live nodes, by name, that some runner built for `schema`'s nodes over this very model
    storage (same name and component class, no hooks, which a re-run would call again)."""
    found: Dict[str, GraphNode] = {}
    for candidate in gc.get_objects():
        if (isinstance(candidate, GraphNode)
                and candidate._model_storage is model_storage
                and candidate._node_name in schema.nodes
                and candidate._component_class is schema.nodes[candidate._node_name].uses
                and not candidate._hooks):
            found[candidate._node_name] = candidate
    return found


def _dependency_order(schema: GraphSchema) -> List[str]:
    """The schema's node names, each after the nodes it needs."""
    order: List[str] = []

    def visit(name: str) -> None:
        if name in order or name not in schema.nodes:
            return
        for need in schema.nodes[name].needs.values():
            visit(need)
        order.append(name)

    for name in schema.nodes:
        visit(name)
    return order
