"""Evaluation of contextual query rewriting: BLEU, exact match, carried-over slot P/R/F1, no-harm.

The slot metrics only look at information that has to be *carried over* from the context: values
already present in the utterance to rewrite are ignored, so the identity system scores 0 on them.
Metrics are also reported per reference category, per source of the carried-over values (the last
bot turn, an earlier user turn, anything else) and on the "answerable" subset whose carried-over
values all occur in the context.

Two rule baselines live here as well: `identity` (the utterance unchanged) and `heuristic`
(pronouns and demonstratives replaced by the most recent compatible entity of the context).
"""
import re
import unicodedata
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple

from cqr_rasa.dialogue import BOT, USER, EntitySpan, Example, Turn

LAST_BOT_TURN = "last_bot_turn"
EARLIER_USER_TURN = "earlier_user_turn"
OTHER = "other"
SOURCES = (LAST_BOT_TURN, EARLIER_USER_TURN, OTHER)

METRIC_KEYS = ("bleu", "exact_match", "slot_precision", "slot_recall", "slot_f1", "no_harm", "n")

System = Callable[[List[Example]], List[str]]

# --------------------------------------------------------------------------------------------
# Text normalisation
# --------------------------------------------------------------------------------------------

_APOSTROPHES = {"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"}
_HYPHENS = {"\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-"}


def _is_word_char(ch: str) -> bool:
    return ch.isalnum() or unicodedata.category(ch).startswith("M")


def normalize(text: str) -> str:
    """Lowercase, NFKC, punctuation dropped (inner apostrophes/hyphens and decimal points kept)."""
    text = unicodedata.normalize("NFKC", text or "").lower()
    text = "".join(_APOSTROPHES.get(ch, _HYPHENS.get(ch, ch)) for ch in text)
    out = []
    for i, ch in enumerate(text):
        if _is_word_char(ch):
            out.append(ch)
            continue
        if ch.isspace():
            out.append(" ")
            continue
        prev = text[i - 1] if i > 0 else ""
        nxt = text[i + 1] if i + 1 < len(text) else ""
        if ch in "'-" and prev and nxt and _is_word_char(prev) and _is_word_char(nxt):
            out.append(ch)
        elif ch == "." and prev.isdigit() and nxt.isdigit():
            out.append(ch)
        else:
            out.append(" ")
    return " ".join("".join(out).split())


def contains(haystack: str, needle: str) -> bool:
    """True when the normalised `needle` occurs in the normalised `haystack` on token boundaries."""
    n = normalize(needle)
    if not n:
        return False
    return " " + n + " " in " " + normalize(haystack) + " "


def _ws(text: str) -> str:
    return " ".join((text or "").split())


def span_value(turn: Turn, span: EntitySpan) -> str:
    """The value an entity span stands for: its `value`, else the covered text."""
    if span.value:
        return span.value
    return turn.text[span.start:span.end]


# --------------------------------------------------------------------------------------------
# Per-example analysis: carried-over candidates, gold values and their sources
# --------------------------------------------------------------------------------------------


def _dedupe(values: Iterable[str]) -> Dict[str, str]:
    """Normalised text -> first surface form, skipping values that normalise to nothing."""
    out = {}  # type: Dict[str, str]
    for value in values:
        key = normalize(value)
        if key and key not in out:
            out[key] = value
    return out


def new_gold_values(example: Example) -> Dict[str, str]:
    """Gold values (normalised -> surface) that do not already occur in the utterance."""
    utterance = example.utterance.text
    return {k: v for k, v in _dedupe(example.gold_values).items() if not contains(utterance, v)}


def candidate_values(example: Example) -> Dict[str, str]:
    """Every annotated entity value of the dialogue plus the gold values, minus the utterance's."""
    values = [span_value(t, s) for t in example.turns for s in t.entities]
    values.extend(example.gold_values)
    utterance = example.utterance.text
    return {k: v for k, v in _dedupe(values).items() if not contains(utterance, v)}


def _turn_has(turn: Turn, value: str) -> bool:
    if contains(turn.text, value):
        return True
    key = normalize(value)
    return any(normalize(span_value(turn, s)) == key for s in turn.entities)


def value_source(example: Example, value: str) -> str:
    """Where `value` comes from: `last_bot_turn`, `earlier_user_turn` or `other`.

    The context is scanned from the most recent turn backwards and the first turn holding the
    value decides; an older bot turn, or no turn at all, gives `other`.
    """
    context = example.context
    bot_turns = [i for i, t in enumerate(context) if t.speaker == BOT]
    last_bot = bot_turns[-1] if bot_turns else None
    for i in range(len(context) - 1, -1, -1):
        turn = context[i]
        if _turn_has(turn, value):
            if i == last_bot:
                return LAST_BOT_TURN
            if turn.speaker == USER:
                return EARLIER_USER_TURN
            return OTHER
    return OTHER


def gold_sources(example: Example) -> Dict[str, str]:
    """Normalised new gold value -> its source."""
    return {k: value_source(example, v) for k, v in new_gold_values(example).items()}


def is_answerable(example: Example) -> bool:
    """At least one new gold value, and every new gold value occurs in some context turn."""
    gold = new_gold_values(example)
    if not gold:
        return False
    return all(any(_turn_has(t, v) for t in example.context) for v in gold.values())


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------


def _occurrences(tokens: List[str], needle: List[str]) -> List[Tuple[int, int]]:
    size = len(needle)
    return [(i, i + size) for i in range(len(tokens) - size + 1) if tokens[i:i + size] == needle]


def predicted_values(prediction: str, candidates: Iterable[str]) -> Set[str]:
    """Normalised candidates that the prediction mentions.

    A candidate counts when it occurs on token boundaries, except where every occurrence lies
    inside an occurrence of a longer mentioned candidate ("starbucks" inside "starbucks on main
    street" is not a separate mention).
    """
    tokens = normalize(prediction).split()
    keys = sorted({normalize(c) for c in candidates} - {""}, key=lambda k: -len(k.split()))
    covered = set()  # type: Set[int]
    found = set()  # type: Set[str]
    for key in keys:
        spans = _occurrences(tokens, key.split())
        free = [(a, b) for a, b in spans if not set(range(a, b)) <= covered]
        if free:
            found.add(key)
            for a, b in free:
                covered.update(range(a, b))
    return found


def _slot_counts(example: Example, prediction: str,
                 source: Optional[str] = None) -> Tuple[int, int, int]:
    """(true positives, predicted, gold) carried-over values for one example.

    A candidate is predicted when the prediction mentions it (see `predicted_values`).

    With `source`, only the gold values of that source count, and candidates that are gold values
    of another source are not counted as predicted either.
    """
    gold = set(new_gold_values(example))
    predicted = predicted_values(prediction, candidate_values(example))
    if source is not None:
        sources = gold_sources(example)
        others = {k for k in gold if sources[k] != source}
        gold = gold - others
        predicted = predicted - others
    return len(predicted & gold), len(predicted), len(gold)


def _bleu(predictions: Sequence[str], references: Sequence[str]) -> float:
    import sacrebleu  # imported here so that the rest of the module works without it

    return float(sacrebleu.corpus_bleu(list(predictions), [list(references)]).score)


def _round(value: Optional[float], digits: int = 4) -> Optional[float]:
    return None if value is None else round(float(value), digits)


def _metrics(pairs: List[Tuple[Example, str]], source: Optional[str] = None) -> Dict:
    """The flat metrics dict (no subsets) over (example, prediction) pairs."""
    n = len(pairs)
    if n == 0:
        return {key: (0 if key == "n" else None) for key in METRIC_KEYS}
    bleu = _bleu([p for _, p in pairs], [e.rewrite for e, _ in pairs])
    exact = sum(_ws(p) == _ws(e.rewrite) for e, p in pairs) / n
    tp = n_pred = n_gold = 0
    for example, prediction in pairs:
        a, b, c = _slot_counts(example, prediction, source)
        tp, n_pred, n_gold = tp + a, n_pred + b, n_gold + c
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    unchanged = [_ws(p) == _ws(e.utterance.text) for e, p in pairs if not e.needs_rewrite]
    no_harm = sum(unchanged) / len(unchanged) if unchanged else None
    return {
        "bleu": _round(bleu, 2),
        "exact_match": _round(exact),
        "slot_precision": _round(precision),
        "slot_recall": _round(recall),
        "slot_f1": _round(f1),
        "no_harm": _round(no_harm),
        "n": n,
    }


def evaluate(examples: List[Example], predictions: List[str]) -> Dict:
    """Metrics of `predictions` against `examples`, with per-category/source/answerable subsets."""
    if len(examples) != len(predictions):
        raise ValueError(
            "got %d predictions for %d examples" % (len(predictions), len(examples)))
    pairs = list(zip(examples, [p if p is not None else "" for p in predictions]))
    result = _metrics(pairs)

    categories = {}  # type: Dict[str, List[Tuple[Example, str]]]
    for example, prediction in pairs:
        for label in dict.fromkeys(example.category or []):
            categories.setdefault(str(label), []).append((example, prediction))
    result["by_category"] = {label: _metrics(categories[label]) for label in sorted(categories)}

    by_source = {}  # type: Dict[str, Dict]
    for source in SOURCES:
        subset = [(e, p) for e, p in pairs if source in gold_sources(e).values()]
        by_source[source] = _metrics(subset, source)
    result["by_source"] = by_source

    result["answerable"] = _metrics([(e, p) for e, p in pairs if is_answerable(e)])
    return result


def evaluate_systems(examples: List[Example], systems: Dict[str, System]) -> Dict:
    """Run every system (a function from the examples to their predictions) and evaluate it."""
    report = {"systems": {}, "n": len(examples)}  # type: Dict
    for name, system in systems.items():
        report["systems"][name] = evaluate(examples, list(system(list(examples))))
    return report


def per_example(rewrite: Callable[[Example], str]) -> System:
    """Lift a one-example rewriter (like `identity` or `heuristic`) to a `System`."""

    def system(examples: List[Example]) -> List[str]:
        return [rewrite(example) for example in examples]

    return system


def _cell(value: Optional[float], width: int) -> str:
    if value is None:
        return "-".rjust(width)
    return ("%.2f" % value).rjust(width)


def format_table(report: Dict) -> str:
    """A fixed-width table of an `evaluate_systems` report (one row per system and subset)."""
    columns = [("bleu", "BLEU"), ("exact_match", "EM"), ("slot_precision", "slot P"),
               ("slot_recall", "slot R"), ("slot_f1", "slot F1"), ("no_harm", "no-harm")]
    rows = []  # type: List[Tuple[str, Dict]]
    for name, metrics in report.get("systems", {}).items():
        rows.append((name, metrics))
        for source in SOURCES:
            sub = metrics.get("by_source", {}).get(source)
            if sub is not None:
                rows.append(("%s / %s" % (name, source), sub))
        if metrics.get("answerable") is not None:
            rows.append(("%s / answerable" % name, metrics["answerable"]))
    label_width = max([len("system")] + [len(label) for label, _ in rows])
    width = 8
    header = "system".ljust(label_width) + "  " + "n".rjust(6) + "".join(
        "  " + title.rjust(width) for _, title in columns)
    lines = ["examples: %s" % report.get("n", "-"), header, "-" * len(header)]
    for label, metrics in rows:
        line = label.ljust(label_width) + "  " + str(metrics.get("n", "-")).rjust(6)
        line += "".join("  " + _cell(metrics.get(key), width) for key, _ in columns)
        lines.append(line)
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Baselines
# --------------------------------------------------------------------------------------------


def identity(example: Example) -> str:
    """The utterance unchanged."""
    return example.utterance.text


_TOKEN = re.compile(r"\w+(?:['\u2019]\w+)*|[^\w\s]", re.UNICODE)

_LOCATION_KEYS = ("poi", "location", "address", "city", "place", "destination", "venue")
_PERSON_KEYS = ("artist", "person", "name", "contact", "party", "attendees")

_PERSON_PRONOUNS = {"they", "them", "their", "him", "her", "his", "he", "she"}
_POSSESSIVES = {"their", "his"}
_ANY_PRONOUNS = {"it", "that", "this"}
_PLACE_NOUNS = {"place", "location"}
_LOCATIVE_WORDS = {
    "go", "goes", "going", "went", "drive", "driving", "navigate", "navigation", "head",
    "heading", "walk", "walking", "travel", "directions", "direction", "route", "far",
    "distance", "reach", "located", "where", "arrive", "commute",
}
_BE = {"is", "are", "was", "were", "be", "'s"}
# Words after which "that"/"this"/"her" still act as pronouns rather than determiners.
_PRONOUN_FOLLOWERS = {
    "is", "was", "are", "will", "would", "should", "can", "could", "does", "did", "has", "had",
    "for", "to", "on", "in", "at", "with", "from", "by", "about", "please", "again", "too",
    "as", "instead", "tomorrow", "today", "tonight", "now", "then", "and", "or", "but", "up",
    "back", "know", "a", "an", "the", "also", "anymore", "once", "later", "soon",
}


_MOTION_WORDS = {
    "go", "goes", "going", "went", "get", "gets", "getting", "drive", "driving", "navigate",
    "navigating", "head", "heading", "walk", "walking", "travel", "come", "coming", "directions",
    "route", "way", "ride", "fly", "commute",
}
_OBJECT_PRONOUNS = {"me", "us", "you", "him", "her", "them"}
_PREPOSITIONS = {
    "to", "from", "at", "in", "near", "around", "by", "into", "towards", "toward", "of", "via",
    "through", "past", "inside", "outside",
}
_IN_KEYS = ("city", "location", "destination")


def _there_phrase(value: str, entity: str, before: List[str]) -> str:
    """What replaces "there": "to X" after a motion word, "X" after a preposition, else at/in X."""
    prev = before[-1] if before else ""
    if prev in _PREPOSITIONS:
        return value
    motion = prev in _MOTION_WORDS or (
        prev in _OBJECT_PRONOUNS and len(before) > 1 and before[-2] in _MOTION_WORDS | {
            "take", "bring", "send", "drop", "lead", "guide"})
    if motion:
        return "to " + value
    name = entity.lower()
    return ("in " if any(k in name for k in _IN_KEYS) else "at ") + value


def _entity_kind(entity: str) -> str:
    name = entity.lower()
    if any(key in name for key in _LOCATION_KEYS):
        return "location"
    if any(key in name for key in _PERSON_KEYS):
        return "person"
    return "other"


def _context_entities(example: Example) -> List[Tuple[str, str, str]]:
    """(kind, entity, value) of the context's entities, most recent turn first, last span first."""
    out = []
    for turn in reversed(example.context):
        spans = sorted(turn.entities, key=lambda s: (s.start, s.end))
        for span in reversed(spans):
            value = span_value(turn, span).strip()
            if value:
                out.append((_entity_kind(span.entity), span.entity, value))
    return out


def _pick(entities: List[Tuple[str, str, str]],
          kind: Optional[str]) -> Optional[Tuple[str, str]]:
    """(entity, value) of the first entity of `kind` (any kind when None)."""
    for entity_kind, entity, value in entities:
        if kind is None or entity_kind == kind:
            return entity, value
    return None


def _possessive(value: str) -> str:
    return value + ("'" if value.lower().endswith("s") else "'s")


def heuristic(example: Example) -> str:
    """Replace pronouns and demonstratives with the most recent compatible context entity.

    "there", "that place", "that location" and "it"/"that" after a locative word take a location
    entity ("there" becomes "to X" after a motion word, "X" after a preposition, else "at/in X"); person pronouns take a person entity (possessives get 's); "it"/"that"/"this" take the
    most recent entity of any kind. Words without a compatible entity are left alone, and so is
    everything else of the utterance (spacing and capitalisation included).
    """
    text = example.utterance.text
    entities = _context_entities(example)
    if not entities:
        return text
    tokens = [(m.group(0), m.start(), m.end()) for m in _TOKEN.finditer(text)]
    lower = [t.lower() for t, _, _ in tokens]
    replacements = []  # type: List[Tuple[int, int, str]]
    i = 0
    while i < len(tokens):
        word = lower[i]
        prev = lower[i - 1] if i > 0 else ""
        nxt = lower[i + 1] if i + 1 < len(tokens) else ""
        next_is_word = bool(nxt) and nxt[0].isalnum()
        end_index = i
        value = None  # type: Optional[str]
        if word in ("that", "this") and nxt in _PLACE_NOUNS:
            picked = _pick(entities, "location")
            value = picked[1] if picked else None
            end_index = i + 1
        elif word == "there":
            existential = prev in _BE or nxt in _BE
            picked = None if existential else _pick(entities, "location")
            if picked is not None:
                value = _there_phrase(picked[1], picked[0], lower[:i])
        elif word in _PERSON_PRONOUNS:
            picked = _pick(entities, "person")
            value = picked[1] if picked else None
            possessive = word in _POSSESSIVES or (
                word == "her" and next_is_word and nxt not in _PRONOUN_FOLLOWERS)
            if value is not None and possessive:
                value = _possessive(value)
        elif word in _ANY_PRONOUNS:
            pronoun = word == "it" or not next_is_word or nxt in _PRONOUN_FOLLOWERS
            if pronoun:
                locative = any(w in _LOCATIVE_WORDS for w in lower[max(0, i - 3):i])
                if locative and word in ("it", "that"):
                    picked = _pick(entities, "location")
                else:
                    picked = _pick(entities, None)
                value = picked[1] if picked else None
        if value is not None:
            start, end = tokens[i][1], tokens[end_index][2]
            original = tokens[i][0]
            if start == 0 and original[:1].isupper() and value[:1].islower():
                value = value[:1].upper() + value[1:]
            replacements.append((start, end, value))
        i = end_index + 1
    if not replacements:
        return text
    pieces = []
    cursor = 0
    for start, end, value in replacements:
        pieces.append(text[cursor:start])
        pieces.append(value)
        cursor = end
    pieces.append(text[cursor:])
    return "".join(pieces)
