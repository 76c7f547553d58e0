"""Data augmentation: consistent entity-value swapping, so the network learns roles, not names."""
import random
import re
from collections import defaultdict
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from cqr_rasa.dialogue import EntitySpan, Example, Turn
from cqr_rasa.features import normalize_value


def value_pool(examples: Sequence[Example],
               extra: Optional[Mapping[str, Iterable[str]]] = None) -> Dict[str, List[str]]:
    """Entity type -> distinct values (as first written) seen in the examples' spans, plus the
    `extra` values per type (e.g. a bot's NLU entity examples)."""
    pool: Dict[str, Dict[str, str]] = defaultdict(dict)
    for example in examples:
        for turn in example.turns:
            for span in turn.entities:
                text = turn.text[span.start:span.end]
                pool[span.entity].setdefault(normalize_value(text), text)
    for entity, values in (extra or {}).items():
        for value in values:
            pool[entity].setdefault(normalize_value(value), value)
    return {entity: sorted(values.values()) for entity, values in pool.items()}


_POSSESSIVE = re.compile(r"'s?(?!\w)")


def possessive_suffix(value: str) -> str:
    """"Imagine Dragons'" but "Coldplay's"."""
    return "'" if value[-1:] in ("s", "S") else "'s"


def replace_values(text: str, spans: Sequence[EntitySpan], mapping: Dict[str, str]
                   ) -> Tuple[str, List[EntitySpan]]:
    """Replaces every occurrence of mapping's keys (normalized values) in `text`, moving spans.

    A possessive after a replaced value follows the new value ("Dragons'" -> "Coldplay's").
    Spans covering exactly a replaced occurrence take the new value; spans that partly overlap
    one are dropped; the others shift.
    """
    if not mapping:
        return text, list(spans)
    keys = sorted(mapping, key=len, reverse=True)
    pattern = re.compile(r"(?<!\w)(" + "|".join(r"\s+".join(map(re.escape, k.split()))
                                                for k in keys) + r")(?!\w)", re.IGNORECASE)
    pieces: List[str] = []
    # per replacement: old value span, new value span, old end of the edit, shift after it
    moves: List[Tuple[int, int, int, int, int, int]] = []
    last = shift = 0
    for match in pattern.finditer(text):
        new = mapping[normalize_value(match.group(0))]
        possessive = _POSSESSIVE.match(text, match.end())
        if possessive and possessive.group(0) == "'" and (
                match.group(0)[-1:] not in ("s", "S") or text[match.start() - 1:match.start()] == "'"):
            possessive = None  # a closing quote, not "Dragons'"
        edit_end = possessive.end() if possessive else match.end()
        replacement = new + (possessive_suffix(new) if possessive else "")
        pieces += [text[last:match.start()], replacement]
        new_start = match.start() + shift
        shift += len(replacement) - (edit_end - match.start())
        moves.append((match.start(), match.end(), new_start, new_start + len(new), edit_end,
                      shift))
        last = edit_end
    pieces.append(text[last:])
    new_spans = []
    for span in spans:
        delta, keep = 0, True
        for old_start, old_end, new_start, new_end, edit_end, shift_after in moves:
            if (span.start, span.end) == (old_start, old_end):
                new_spans.append(EntitySpan(new_start, new_end, span.entity))
                keep = False
                break
            if span.start < edit_end and span.end > old_start:
                keep = False
                break
            if edit_end <= span.start:
                delta = shift_after
        if keep:
            new_spans.append(EntitySpan(span.start + delta, span.end + delta, span.entity,
                                        span.value))
    return "".join(pieces), new_spans


def swap_entities(example: Example, pool: Dict[str, List[str]], rng: random.Random,
                  probability: float = 0.7) -> Example:
    """A copy of `example` where some entity values are replaced, consistently everywhere."""
    mapping: Dict[str, str] = {}
    for turn in example.turns:
        for span in turn.entities:
            key = normalize_value(turn.text[span.start:span.end])
            choices = pool.get(span.entity, [])
            if key in mapping or len(choices) < 2 or rng.random() > probability:
                continue
            new = rng.choice(choices)
            if normalize_value(new) != key:
                mapping[key] = new
    if not mapping:
        return example
    turns = []
    for turn in example.turns:
        text, spans = replace_values(turn.text, turn.entities, mapping)
        turns.append(Turn(turn.speaker, text, turn.intent, spans))
    swap = lambda s: replace_values(s, [], mapping)[0]  # noqa: E731
    return Example(turns, swap(example.rewrite), example.id,
                   [swap(v) for v in example.gold_values],
                   [swap(a) for a in example.alternatives], list(example.category))
