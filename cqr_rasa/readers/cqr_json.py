"""Reader for the public CQR JSON (KVRET dialogues with crowd-sourced rewrites).

Every `reformulation` record on an assistant turn becomes one `Example` whose last turn is the
driver utterance at `base_utt_idx`. Context protocols:

- ``online``: the turns before the base utterance (what a live assistant has seen);
- ``full``: every turn up to the reformulation's own turn, except the base utterance.

Entity spans in every turn come from matching values in its text: first the `slots` of the
assistant turns up to the reformulation's turn, then the dialogue's knowledge base
(`scenario.kb.items`: the places, addresses, distances, events and forecasts the assistant
answers from), each value tagged with its slot or column name.
"""
import json
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Sequence

from cqr_rasa.dialogue import BOT, USER, Example, Turn
from cqr_rasa.readers import DataError, PathLike, check_protocol, read_text
from cqr_rasa.spans import ValueMatcher

SPEAKER = {"driver": USER, "assistant": BOT}
FORMAT_HINT = "see the CQR format in shared/data/cqr/README.md"


def load_json(path: PathLike) -> Any:
    """Parse the JSON file at `path`, raising `DataError` with the line of a syntax error."""
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise DataError(path, f"line {err.lineno}", f"invalid JSON ({err.msg}, column "
                        f"{err.colno}); fix the syntax there") from None


def is_cqr(data: Any) -> bool:
    """Whether parsed JSON looks like CQR JSON: a non-empty list of objects with "dialogue"."""
    return (isinstance(data, list) and bool(data)
            and all(isinstance(item, dict) and "dialogue" in item for item in data))


def read_cqr_json(path: PathLike, protocol: str = "full") -> List[Example]:
    """Read a CQR JSON file into one `Example` per reformulation record."""
    check_protocol(protocol)
    data = load_json(path)
    if not is_cqr(data):
        raise DataError(path, None, "top level must be a non-empty JSON array of objects with a "
                        f"\"dialogue\" key; {FORMAT_HINT}")
    return cqr_examples(data, path, protocol)


def cqr_examples(records: Sequence[Dict[str, Any]], path: PathLike, protocol: str) -> List[Example]:
    """Build the examples of already-parsed CQR `records` (`path` only names the file in errors)."""
    check_protocol(protocol)
    path, examples = Path(path), []
    for number, record in enumerate(records, 1):
        try:
            examples.extend(_dialogue_examples(record, protocol, path, number))
        except (KeyError, TypeError, AttributeError) as err:
            raise DataError(path, f"dialogue {number}", f"malformed record ({type(err).__name__}: "
                            f"{err}); {FORMAT_HINT}") from None
    return examples


def _dialogue_examples(record: Dict[str, Any], protocol: str, path: Path,
                       number: int) -> Iterator[Example]:
    """Yield the examples of one dialogue record (the `number`-th, 1-based)."""
    scenario = record["scenario"]
    intent = scenario["task"]["intent"]
    raw = record["dialogue"]
    knowledge = (scenario.get("kb") or {}).get("items") or []
    speakers, texts = [], []
    for index, turn in enumerate(raw):
        if turn["turn"] not in SPEAKER:
            raise DataError(path, f"dialogue {number}, turn index {index}",
                            f"\"turn\" is {turn['turn']!r}; use \"driver\" or \"assistant\"")
        speakers.append(SPEAKER[turn["turn"]])
        texts.append(turn["data"]["utterance"].strip())
    for index, turn in enumerate(raw):
        ref = turn.get("reformulation")
        if ref is None:
            continue
        base = ref["base_utt_idx"]
        if not (isinstance(base, int) and 0 <= base < index and speakers[base] == USER):
            raise DataError(path, f"dialogue {number}, turn index {index}",
                            f"base_utt_idx {base!r} must point at an earlier driver turn")
        before = range(base) if protocol == "online" else range(index + 1)
        slots = _slot_values([raw[i]["data"].get("slots") for i in range(index + 1)
                              if speakers[i] == BOT] + knowledge)
        order = [i for i in before if i != base] + [base]
        turns = [Turn(speakers[i], texts[i], intent, slots(texts[i])) for i in order]
        reformulated = ref.get("reformulated_utt")
        rewrite = texts[base] if reformulated is None else reformulated.strip()
        gold = [] if reformulated is None else _unique(_flatten(ref.get("slots")))
        alternatives = [a for a in _unique(_flatten(ref.get("mturk_reformulations")))
                        if a != rewrite]
        category = [f.strip() for f in (ref.get("flag") or "").split(";") if f.strip()]
        yield Example(turns, rewrite, f"{scenario['uuid']}:{index}", gold, alternatives, category)


def _flatten(value: Any) -> Iterator[str]:
    """Yield the stripped, non-empty strings in a slot value, list (nested) or dict of them."""
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        for item in value:
            yield from _flatten(item)
    elif value is not None and str(value).strip():
        yield str(value).strip()


def _unique(values: Iterable[str]) -> List[str]:
    """Drop repeated values, keeping the first occurrence's order."""
    return list(dict.fromkeys(values))


def _slot_values(slot_dicts: Iterable[Any]) -> ValueMatcher:
    """A matcher for every value of the given slot dicts (first slot name wins)."""
    values: Dict[str, str] = {}
    for slots in slot_dicts:
        for name, value in (slots or {}).items():
            for text in _flatten(value):
                values.setdefault(text, name)
    return ValueMatcher(values)
