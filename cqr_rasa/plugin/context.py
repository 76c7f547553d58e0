"""From a Rasa tracker to the plain `Turn`s the rewriter reads."""
import re
from typing import Any, Callable, Dict, Iterable, List, Optional, Pattern, Tuple

from rasa.shared.core.domain import Domain
from rasa.shared.core.events import BotUttered, SlotSet, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.shared.nlu.constants import (
    ENTITIES,
    ENTITY_ATTRIBUTE_END,
    ENTITY_ATTRIBUTE_START,
    ENTITY_ATTRIBUTE_TYPE,
    ENTITY_ATTRIBUTE_VALUE,
    TEXT,
)

from cqr_rasa.dialogue import BOT, USER, EntitySpan, Turn
from cqr_rasa.spans import ValueMatcher, merge_spans

BotEntityExtractor = Callable[[str], List[EntitySpan]]
ResponseEntities = Callable[[str, str], List[EntitySpan]]  # (response name, bot text) -> spans

PLACEHOLDER = re.compile(r"{([^\n{}]+?)}")  # what Rasa's response interpolation fills


def entity_spans(text: str, entities: Optional[Iterable[Dict[str, Any]]]) -> List[EntitySpan]:
    """EntitySpans from Rasa entity dicts, keeping only spans that lie inside `text`."""
    spans = []
    for entity in entities or []:
        start, end = entity.get(ENTITY_ATTRIBUTE_START), entity.get(ENTITY_ATTRIBUTE_END)
        kind = entity.get(ENTITY_ATTRIBUTE_TYPE)
        if (isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(text)
                and isinstance(kind, str)):
            value = entity.get(ENTITY_ATTRIBUTE_VALUE)
            spans.append(EntitySpan(start, end, kind, value if isinstance(value, str) else None))
    return spans


class ResponseTemplates:
    """Entity spans of a bot text written from one of the domain's responses: the text is matched
    against the response's variations, and what filled each `{name}` placeholder becomes a span
    of the entity the slot `name` is filled from (or of `name` itself, e.g. a value a custom
    action passed to `utter_message`)."""

    def __init__(self, domain: Domain) -> None:
        entity_of: Dict[str, str] = {}
        for slot in domain.slots:
            for mapping in slot.mappings:
                if mapping.get("type") == "from_entity" and isinstance(mapping.get("entity"), str):
                    entity_of.setdefault(slot.name, mapping["entity"])
        self._templates: Dict[str, List[Tuple[Pattern, List[str]]]] = {}
        for name, variations in domain.responses.items():
            templates = []
            for variation in variations:
                text = variation.get("text")
                # doubled braces are literal ones to Rasa: such variations are not matched
                if not isinstance(text, str) or "{{" in text or not PLACEHOLDER.search(text):
                    continue
                pieces = PLACEHOLDER.split(text)  # literal, name, literal, name, ..., literal
                regex = "(.+?)".join(map(re.escape, pieces[::2]))
                templates.append((re.compile(regex, re.DOTALL),
                                  [entity_of.get(key, key) for key in pieces[1::2]]))
            # the variation with the most placeholders is tried first ("Playing {song} by
            # {artist}." before "Playing {song}.")
            if templates:
                self._templates[name] = sorted(templates, key=lambda t: -len(t[1]))

    def __call__(self, response: str, text: str) -> List[EntitySpan]:
        for pattern, entities in self._templates.get(response, []):
            match = pattern.fullmatch(text)
            if match:
                # a slot that was empty is written as "None"
                return [EntitySpan(match.start(k), match.end(k), entity, match.group(k))
                        for k, entity in enumerate(entities, 1)
                        if match.group(k).strip() and match.group(k) != "None"]
        return []


def context_turns(tracker: Optional[DialogueStateTracker], max_turns: int,
                  known_entities: Optional[BotEntityExtractor] = None,
                  extract_bot_entities: Optional[BotEntityExtractor] = None,
                  response_entities: Optional[ResponseEntities] = None) -> List[Turn]:
    """The last `max_turns` user and bot turns of the conversation, oldest first.

    User turns carry the text their NLU parse saw (the rewrite, when one was applied: its entity
    offsets index that text and it needs no earlier context), their intent and entities. Bot turns
    carry entity spans recovered, in this order of preference, from the response template the text
    was written from (`response_entities`, given the `utter_action` Rasa records), by matching the
    conversation's slot values, the entity values of the user turns in the window, and
    `known_entities` (e.g. the NLU training data's entity examples); when none of these finds
    anything, `extract_bot_entities` (the NLU's own extractor) is asked.
    """
    if tracker is None or max_turns <= 0:
        return []
    events = tracker.applied_events()
    # only the last `max_turns` turns are built (a long conversation has thousands), but the
    # slot values are followed from the start
    window = set([i for i, event in enumerate(events) if _is_turn(event)][-max_turns:])
    raw: List[Any] = []
    slots: Dict[str, str] = {}
    for i, event in enumerate(events):
        if isinstance(event, SlotSet) and isinstance(event.value, str) and event.value.strip():
            slots[event.value] = event.key
        elif i not in window:
            continue
        elif isinstance(event, UserUttered):
            parse = event.parse_data or {}
            text = parse.get(TEXT) if isinstance(parse.get(TEXT), str) else event.text
            raw.append(Turn(USER, text, event.intent_name, entity_spans(text, parse.get(ENTITIES))))
        else:
            response = (event.metadata or {}).get("utter_action")
            raw.append((event.text, dict(slots), response if isinstance(response, str) else None))
    user_values = {span.value or turn.text[span.start:span.end]: span.entity
                   for turn in raw if isinstance(turn, Turn) for span in turn.entities}
    turns = []
    for item in raw:
        if isinstance(item, Turn):
            turns.append(item)
            continue
        text, slot_values, response = item
        values: Dict[str, str] = {}
        for source in (slot_values, user_values):  # preferred first
            for value, entity in source.items():
                values.setdefault(value, entity)
        spans = ValueMatcher(values)(text)
        if response is not None and response_entities is not None:
            spans = merge_spans(response_entities(response, text), spans)
        if known_entities is not None:
            spans = merge_spans(spans, known_entities(text))
        if not spans and extract_bot_entities is not None:
            spans = extract_bot_entities(text)
        turns.append(Turn(BOT, text, None, spans))
    return turns


def _is_turn(event: Any) -> bool:
    """A user message or a bot text: what the rewriter reads as a turn."""
    return ((isinstance(event, UserUttered) and event.text is not None)
            or (isinstance(event, BotUttered) and bool(event.text)))
