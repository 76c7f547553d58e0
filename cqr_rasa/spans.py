"""Finding known entity values in text: shared by the CQR reader and the Rasa context builder."""
import re
from typing import Dict, List, Mapping, Tuple

from cqr_rasa.dialogue import EntitySpan


class ValueMatcher:
    """Finds the values of a {value: entity} mapping in texts (case-insensitive, whole words).

    Overlapping matches resolve to the longer one; the first entity given for a value wins.
    """

    def __init__(self, values: Mapping[str, str]) -> None:
        entities: Dict[str, str] = {}
        for value, entity in values.items():
            key = " ".join(value.lower().split())
            if key:
                entities.setdefault(key, entity)
        self._patterns = [
            (re.compile(r"(?<!\w)" + r"\s+".join(map(re.escape, key.split())) + r"(?!\w)",
                        re.IGNORECASE), entity)
            for key, entity in entities.items()]

    def __call__(self, text: str) -> List[EntitySpan]:
        found = sorted(((m.start(), m.end(), entity) for pattern, entity in self._patterns
                        for m in pattern.finditer(text)), key=lambda s: (s[0] - s[1], s[0]))
        taken: List[Tuple[int, int, str]] = []
        for start, end, entity in found:
            if all(end <= s or start >= e for s, e, _ in taken):
                taken.append((start, end, entity))
        return [EntitySpan(s, e, entity, text[s:e]) for s, e, entity in sorted(taken)]


def merge_spans(preferred: List[EntitySpan], others: List[EntitySpan]) -> List[EntitySpan]:
    """`preferred` plus those of `others` that overlap none of them, in text order."""
    kept = list(preferred)
    for span in others:
        if all(span.end <= p.start or span.start >= p.end for p in preferred):
            kept.append(span)
    return sorted(kept, key=lambda s: s.start)
