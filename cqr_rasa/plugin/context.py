"""From a Rasa tracker to the plain `Turn`s the rewriter reads."""
from typing import Any, Callable, Dict, Iterable, List, Optional

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


def context_turns(tracker: Optional[DialogueStateTracker], max_turns: int,
                  known_entities: Optional[BotEntityExtractor] = None,
                  extract_bot_entities: Optional[BotEntityExtractor] = None) -> List[Turn]:
    """The last `max_turns` user and bot turns of the conversation, oldest first.

    User turns carry the text their NLU parse saw (the rewrite, when one was applied: its entity
    offsets index that text and it needs no earlier context), their intent and entities. Bot turns
    carry entity spans recovered by matching, in this order of preference, the conversation's slot
    values, the entity values of the user turns in the window and `known_values` (value -> entity,
    e.g. the NLU training data's entity examples); when none matches, `extract_bot_entities` (the
    NLU's own extractor) is asked.
    """
    if tracker is None or max_turns <= 0:
        return []
    raw: List[Any] = []
    slots: Dict[str, str] = {}
    for event in tracker.applied_events():
        if isinstance(event, SlotSet) and isinstance(event.value, str) and event.value.strip():
            slots[event.value] = event.key
        elif isinstance(event, UserUttered) and event.text is not None:
            parse = event.parse_data or {}
            text = parse.get(TEXT) if isinstance(parse.get(TEXT), str) else event.text
            raw.append(Turn(USER, text, event.intent_name, entity_spans(text, parse.get(ENTITIES))))
        elif isinstance(event, BotUttered) and event.text:
            raw.append((event.text, dict(slots)))
    raw = raw[-max_turns:]
    user_values = {span.value or turn.text[span.start:span.end]: span.entity
                   for turn in raw if isinstance(turn, Turn) for span in turn.entities}
    turns = []
    for item in raw:
        if isinstance(item, Turn):
            turns.append(item)
            continue
        text, slot_values = item
        values: Dict[str, str] = {}
        for source in (slot_values, user_values):  # preferred first
            for value, entity in source.items():
                values.setdefault(value, entity)
        spans = ValueMatcher(values)(text)
        if known_entities is not None:
            spans = merge_spans(spans, known_entities(text))
        if not spans and extract_bot_entities is not None:
            spans = extract_bot_entities(text)
        turns.append(Turn(BOT, text, None, spans))
    return turns
