"""ContextualQueryRewriter: the Rasa graph component that rewrites the user message from the
conversation and re-runs the NLU before it on the fully specified text.

Put it last in `pipeline:` (recipe default.v1). It is registered as an intent classifier only so
that Rasa gives it a predict node; it never changes the first-pass parse unless it rewrites.
"""
import hashlib
import json
import logging
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, List, Optional, Text

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.graph_components.providers.domain_provider import DomainProvider
from rasa.shared.constants import INTENT_MESSAGE_PREFIX
from rasa.shared.core.domain import Domain
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.shared.exceptions import InvalidConfigException
from rasa.shared.nlu.constants import ENTITIES, INTENT, INTENT_NAME_KEY, TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from cqr_rasa.augment import value_pool
from cqr_rasa.dialogue import USER, Example, Turn
from cqr_rasa.evaluation import new_gold_values, normalize, span_value
from cqr_rasa.plugin.context import ResponseTemplates, context_turns, entity_spans
from cqr_rasa.plugin.rerun import UpstreamNLU
from cqr_rasa.readers import DataError
from cqr_rasa.readers.rasa_yaml import read_rasa_yaml
from cqr_rasa.rewriter import ModelFileError, Rewriter, RewriterConfig
from cqr_rasa.spans import ValueMatcher
from cqr_rasa.training import TrainConfig, train

logger = logging.getLogger(__name__)

REWRITE_KEY = "rewrite"  # the parse data key holding what the component did
KNOWN_VALUES_FILE = "known_values.json"
INTENT_ENTITIES_FILE = "intent_entities.json"
NAME = "cqr_rasa.ContextualQueryRewriter"


@dataclass
class ComponentConfig:
    """The component's config keys; `get_default_config()` is built from these defaults."""

    # Rasa-style YAML file with annotated conversations and their rewrites (relative to the
    # directory `rasa train` runs in).
    rewrites_file: str = "data/rewrites.yml"
    # Directory written by `cqr-rasa train` to fine-tune from (None: train from scratch).
    pretrained_model: Optional[str] = None
    # How many earlier turns (user and bot) the rewriter reads.
    max_history_turns: int = 8
    # Apply a rewrite only when its confidence (0-1) reaches this.
    min_confidence: float = 0.3
    # Beam width for decoding (1 = greedy, fastest).
    beam_size: int = 1
    # Beam search only: taken from the end-of-rewrite token's log-probability when rewrites are
    # ranked, so that longer ones can win (3.0 was best on the CQR data with beam_size 4).
    eos_penalty: float = 0.0
    # Most training epochs: training stops after 10 without improvement on a 10% held-out split
    # (300+ examples) or else on the training loss.
    epochs: int = 40
    # Entity-swapped copies of each rewrite example per training epoch, with values drawn from
    # the NLU data's entity examples (and the rewrites file).
    synthetic_examples: int = 2
    # First-pass intents that are never rewritten.
    skip_intents: List[str] = field(default_factory=list)
    # Copy an entity from the context only if the NLU data annotates its type in examples of the
    # message's first-pass intent, or a rewrite of that intent's utterances carries it over
    # (intents with neither are not restricted).
    copy_intent_entities_only: bool = True
    # Seed for training and augmentation.
    random_seed: int = 42
    # PyTorch threads for training the rewriter (at most the machine's cores); 1 when other
    # busy work shares a small machine, where threads wait on each other.
    training_threads: int = 2

    @classmethod
    def from_dict(cls, config: Dict[Text, Any]) -> "ComponentConfig":
        """Validates Rasa's merged config; errors name the key, the value and what is allowed."""
        values = {f.name: config.get(f.name, getattr(cls(), f.name)) for f in fields(cls)}

        def fail(key: str, allowed: str) -> None:
            raise InvalidConfigException(
                f"{NAME}: config key `{key}` is {values[key]!r}; it must be {allowed}. "
                f"Fix it in config.yml under `- name: {NAME}`.")

        for key, low in (("max_history_turns", 1), ("beam_size", 1), ("epochs", 1),
                         ("synthetic_examples", 0), ("training_threads", 1)):
            if not isinstance(values[key], int) or isinstance(values[key], bool) \
                    or values[key] < low:
                fail(key, f"an integer >= {low}")
        if not isinstance(values["min_confidence"], (int, float)) \
                or not 0 <= values["min_confidence"] <= 1:
            fail("min_confidence", "a number between 0 and 1")
        if not isinstance(values["eos_penalty"], (int, float)) \
                or isinstance(values["eos_penalty"], bool) or not values["eos_penalty"] >= 0:
            fail("eos_penalty", "a number >= 0")
        if not isinstance(values["rewrites_file"], str) or not values["rewrites_file"]:
            fail("rewrites_file", "a path to a YAML file")
        if values["pretrained_model"] is not None and not isinstance(values["pretrained_model"],
                                                                     str):
            fail("pretrained_model", "null or a directory written by `cqr-rasa train`")
        if not isinstance(values["skip_intents"], list) \
                or not all(isinstance(i, str) for i in values["skip_intents"]):
            fail("skip_intents", "a list of intent names")
        if not isinstance(values["random_seed"], int):
            fail("random_seed", "an integer")
        if not isinstance(values["copy_intent_entities_only"], bool):
            fail("copy_intent_entities_only", "true or false")
        return cls(**values)

    def rewriter_settings(self) -> Dict[str, Any]:
        """The `RewriterConfig` fields these keys set, at training and at load alike."""
        return {"max_history_turns": self.max_history_turns, "beam_size": self.beam_size,
                "eos_penalty": float(self.eos_penalty)}


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER, is_trainable=True)
class ContextualQueryRewriter(GraphComponent):
    """Rewrites the user message so every reference to earlier turns is spelled out."""

    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        """Defaults of every config key (see `ComponentConfig` for what each does)."""
        return asdict(ComponentConfig())

    @classmethod
    def create(cls, config: Dict[Text, Any], model_storage: ModelStorage, resource: Resource,
               execution_context: ExecutionContext) -> "ContextualQueryRewriter":
        return cls(config, model_storage, resource)

    def __init__(self, config: Dict[Text, Any], model_storage: ModelStorage, resource: Resource,
                 rewriter: Optional[Rewriter] = None, known_values: Optional[Dict] = None,
                 upstream: Optional[UpstreamNLU] = None,
                 templates: Optional[ResponseTemplates] = None,
                 intent_entities: Optional[Dict[str, List[str]]] = None) -> None:
        self.config = ComponentConfig.from_dict(config)
        self._model_storage = model_storage
        self._resource = resource
        self._rewriter = rewriter
        self._known_values = known_values or {}
        self._upstream = upstream
        self._templates = templates
        self._intent_entities = intent_entities or {}
        self._bot_entities: "OrderedDict[str, list]" = OrderedDict()
        self._known_spans: "OrderedDict[str, list]" = OrderedDict()
        self._known_matcher = ValueMatcher(self._known_values)

    def train(self, training_data: TrainingData) -> Resource:
        """Trains the rewriter on `rewrites_file`, swapping in values from the NLU data; saves it."""
        examples = self._read_rewrites()
        nlu_values = _nlu_entity_values(training_data)
        train_config = TrainConfig(epochs=self.config.epochs, seed=self.config.random_seed,
                                   swapped_copies=self.config.synthetic_examples,
                                   validation_fraction=0.1 if len(examples) >= 300 else 0.0,
                                   # word dropout was chosen on the CQR data; on the example
                                   # bot's 103 scripted turns 0.1 got 102 right and 0 all of them
                                   word_dropout=0.0, threads=self.config.training_threads)
        self._rewriter = train(examples, train_config,
                               RewriterConfig(**self.config.rewriter_settings()),
                               initial=self._pretrained(), extra_values=nlu_values)
        known = value_pool(examples, nlu_values)
        self._known_values = {value: entity for entity, values in known.items()
                              for value in values}
        self._known_matcher = ValueMatcher(self._known_values)
        self._known_spans.clear()
        self._intent_entities = _intent_entity_types(training_data, examples)
        self.persist()
        return self._resource

    def process(self, messages: List[Message],
                tracker: Optional[DialogueStateTracker] = None) -> List[Message]:
        """Rewrites each message from the tracker's history; never loses the message."""
        return [self._process_one(message, tracker) for message in messages]

    def _process_one(self, message: Message, tracker: Optional[DialogueStateTracker]) -> Message:
        text = message.get(TEXT) or ""
        intent = (message.get(INTENT) or {}).get(INTENT_NAME_KEY)
        info: Dict[str, Any] = {"original_text": text, "rewritten_text": text, "confidence": None,
                                "applied": False, "first_pass_intent": intent, "reason": "",
                                "inserted": []}
        result = message
        started = time.perf_counter()
        try:
            result = self._rewrite(message, text, intent, tracker, info)
        except Exception as error:  # the user's message must always get through
            logger.warning("%s: rewriting %r failed (%r); the first-pass parse is used.",
                           NAME, text, error, exc_info=logger.isEnabledFor(logging.DEBUG))
            info.update(rewritten_text=text, applied=False, inserted=[],
                        reason=f"error: {type(error).__name__}")
            result = message
        info["milliseconds"] = round((time.perf_counter() - started) * 1000.0, 1)
        logger.debug("%s: %s", NAME, info)
        result.set(REWRITE_KEY, info, add_to_output=True)
        return result

    def _rewrite(self, message: Message, text: str, intent: Optional[str],
                 tracker: Optional[DialogueStateTracker], info: Dict[str, Any]) -> Message:
        if self._rewriter is None:
            info["reason"] = "not_trained"
            return message
        if not text.strip():
            info["reason"] = "empty_text"
            return message
        if text.lstrip().startswith(INTENT_MESSAGE_PREFIX):
            info["reason"] = "intent_payload"
            return message
        if intent in self.config.skip_intents:
            info["reason"] = "skip_intent"
            return message
        history = self.history(tracker)
        if not history:
            info["reason"] = "no_history"
            return message
        current = Turn(USER, text, intent, entity_spans(text, message.get(ENTITIES)))
        copy_types = (self._intent_entities.get(intent)
                      if self.config.copy_intent_entities_only else None)
        rewrite = self._rewriter.rewrite(history + [current], copy_types)
        info.update(rewritten_text=rewrite.text, confidence=round(rewrite.confidence, 4))
        if not rewrite.changed:
            info.update(rewritten_text=text, reason="unchanged")
            if rewrite.dropped:  # a rewrite was written, and refused
                info.update(reason="drops_words", dropped=rewrite.dropped)
            return message
        if rewrite.confidence < self.config.min_confidence:
            info["reason"] = "low_confidence"
            return message
        if self._upstream is None:
            info["reason"] = "no_upstream_nlu"
            return message
        reparsed = self._upstream.parse(rewrite.text, message, tracker)
        info.update(applied=True, reason="rewritten", inserted=[
            {"word": rewrite.tokens[k],
             "from_turn": None if t is None else {
                 "speaker": history[t].speaker, "text": history[t].text,
                 "turns_back": len(history) - t}}
            for k, t in sorted(rewrite.sources.items())])
        return reparsed

    def history(self, tracker: Optional[DialogueStateTracker]) -> List[Turn]:
        """The context turns the rewriter reads, bot turns with their recovered entity spans."""
        return context_turns(tracker, self.config.max_history_turns, self._known_entities,
                             self._extract_bot_entities, self._templates)

    def _known_entities(self, text: str) -> list:
        """Spans of the known entity values in a bot text (cached: bot texts recur each turn)."""
        return _cached(self._known_spans, text, self._known_matcher)

    def _extract_bot_entities(self, text: str) -> list:
        """The upstream NLU's entities on a bot text (cached: bot texts repeat)."""
        if self._upstream is None:
            return []
        upstream = self._upstream
        return _cached(self._bot_entities, text, lambda t: entity_spans(
            t, upstream.parse(t, Message(data={TEXT: t}), None).get(ENTITIES)))

    def _read_rewrites(self) -> List[Example]:
        path = Path(self.config.rewrites_file)
        if not path.is_file():
            raise InvalidConfigException(
                f"{NAME}: rewrites_file '{path}' not found (looked in {Path.cwd()}). Create it "
                f"with a top-level `rewrites:` list of annotated conversations (see the cqr_rasa "
                f"README, 'The rewrites file') or set `rewrites_file` in config.yml.")
        try:
            examples = read_rasa_yaml(path)
        except DataError as error:
            raise InvalidConfigException(f"{NAME}: {error}") from None
        if not examples:
            raise InvalidConfigException(f"{NAME}: {path} has no rewrite examples; add at least "
                                         f"one under `rewrites:`.")
        return examples

    def _pretrained(self) -> Optional[Rewriter]:
        if self.config.pretrained_model is None:
            return None
        try:
            return Rewriter.load(self.config.pretrained_model)
        except ModelFileError as error:
            raise InvalidConfigException(f"{NAME}: pretrained_model: {error}") from None

    @classmethod
    def fingerprint_addon(cls, config: Dict[str, Any]) -> Optional[str]:
        """Hashes the rewrites file (and pretrained model) so edits retrain, and only edits."""
        digest = hashlib.sha256()
        paths = [config.get("rewrites_file") or ComponentConfig.rewrites_file]
        if config.get("pretrained_model"):
            paths += sorted(str(p) for p in Path(config["pretrained_model"]).glob("*"))
        for name in paths:
            path = Path(name)
            digest.update(name.encode())
            digest.update(path.read_bytes() if path.is_file() else b"<missing>")
        return digest.hexdigest()

    @classmethod
    def load(cls, config: Dict[Text, Any], model_storage: ModelStorage, resource: Resource,
             execution_context: ExecutionContext, **kwargs: Any) -> "ContextualQueryRewriter":
        """Loads the trained rewriter and builds the runner that re-parses rewritten text."""
        settings = ComponentConfig.from_dict(config)
        with model_storage.read_from(resource) as directory:
            rewriter = Rewriter.load(directory, **settings.rewriter_settings())
            known = json.loads((directory / KNOWN_VALUES_FILE).read_text(encoding="utf-8"))
            # models trained before the file existed have no restriction
            table = directory / INTENT_ENTITIES_FILE
            intent_entities = (json.loads(table.read_text(encoding="utf-8")) if table.is_file()
                               else {})
        # the first conversations' rewrites should not wait for XLA to compile
        rewriter.warm_up()
        upstream = UpstreamNLU.build(model_storage, execution_context)
        domain = _trained_domain(model_storage, execution_context)
        templates = ResponseTemplates(domain) if domain is not None else None
        return cls(config, model_storage, resource, rewriter, known, upstream, templates,
                   intent_entities)

    def persist(self) -> None:
        if self._rewriter is None:
            return
        with self._model_storage.write_to(self._resource) as directory:
            self._rewriter.save(directory)
            (directory / KNOWN_VALUES_FILE).write_text(json.dumps(self._known_values),
                                                       encoding="utf-8")
            (directory / INTENT_ENTITIES_FILE).write_text(json.dumps(self._intent_entities),
                                                          encoding="utf-8")


def _cached(cache: "OrderedDict[str, list]", text: str, compute: Any) -> list:
    """`compute(text)`, remembered for the 512 most recent texts."""
    if text not in cache:
        cache[text] = compute(text)
        if len(cache) > 512:
            cache.popitem(last=False)
    return cache[text]


def _trained_domain(model_storage: ModelStorage,
                    execution_context: ExecutionContext) -> Optional[Domain]:
    """The domain the model was trained with, loaded by its own domain provider node; None for a
    model without one (`rasa train nlu`)."""
    schema = execution_context.graph_schema
    for node in (schema.nodes.values() if schema is not None else []):
        if isinstance(node.uses, type) and issubclass(node.uses, DomainProvider):
            try:
                return node.uses.load(node.config, model_storage, node.resource,
                                      execution_context).provide_inference()
            except Exception as error:  # only bot-turn spans depend on it: keep loading
                logger.warning("%s: could not read the model's domain (%r); bot turns get their "
                               "entity spans without the response templates.", NAME, error)
    return None


def _nlu_entity_values(training_data: TrainingData) -> Dict[str, List[str]]:
    """Entity type -> values annotated in the NLU examples (as written in the text)."""
    values: Dict[str, set] = {}
    for message in training_data.entity_examples:
        text = message.get(TEXT) or ""
        for span in entity_spans(text, message.get(ENTITIES)):
            values.setdefault(span.entity, set()).add(text[span.start:span.end])
    return {entity: sorted(found) for entity, found in values.items()}


def _intent_entity_types(training_data: TrainingData,
                         examples: List[Example]) -> Dict[str, List[str]]:
    """Intent -> the entity types annotated in its NLU examples, and those the rewrites of its
    utterances carry over from the context (intents with none left out)."""
    types: Dict[str, set] = {}
    for message in training_data.intent_examples:
        found = {entity.get("entity") for entity in message.get(ENTITIES) or []} - {None}
        if found:
            types.setdefault(message.get(INTENT), set()).update(found)
    for example in examples:
        carried = new_gold_values(example)
        found = {span.entity for turn in example.context for span in turn.entities
                 if normalize(span_value(turn, span)) in carried}
        if example.utterance.intent and found:
            types.setdefault(example.utterance.intent, set()).update(found)
    return {intent: sorted(found) for intent, found in types.items()}
