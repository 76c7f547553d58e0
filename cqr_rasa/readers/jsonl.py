"""Reader for JSONL rewrite data: one example object per line, blank lines skipped.

``{"id": str?, "turns": [{"speaker": "user"|"bot", "text": str, "intent": str?,
"entities": [{"start": int, "end": int, "entity": str, "value": str?}]?}, ...],
"rewrite": str, "gold_values": [str]?}``; unknown keys are ignored.
"""
import json
from pathlib import Path
from typing import Any, List

from cqr_rasa.dialogue import SPEAKERS, USER, EntitySpan, Example, Turn
from cqr_rasa.readers import DataError, PathLike, read_text


class _Invalid(Exception):
    """A problem in one line; `read_jsonl` adds the file and line number."""


def read_jsonl(path: PathLike) -> List[Example]:
    """Read a JSONL file into `Example`s (id defaults to "<file name>:<line>")."""
    path = Path(path)
    examples = []
    for number, line in enumerate(read_text(path).split("\n"), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(path, f"line {number}", f"invalid JSON ({err.msg}, column "
                            f"{err.colno}); each line must hold one complete JSON object") from None
        try:
            examples.append(_example(obj, f"{path.name}:{number}"))
        except _Invalid as err:
            raise DataError(path, f"line {number}", str(err)) from None
    return examples


def _example(obj: Any, default_id: str) -> Example:
    """Validate one parsed line and build its `Example`."""
    if not isinstance(obj, dict):
        raise _Invalid("expected a JSON object with \"turns\" and \"rewrite\"")
    turns = obj.get("turns")
    if not isinstance(turns, list) or not turns:
        raise _Invalid("\"turns\" must be a non-empty list of {\"speaker\", \"text\"} objects")
    turns = [_turn(turn, n) for n, turn in enumerate(turns, 1)]
    if turns[-1].speaker != USER:
        raise _Invalid("the last turn must have \"speaker\": \"user\" (it is the utterance to "
                       "rewrite); drop trailing bot turns")
    rewrite = obj.get("rewrite")
    if not isinstance(rewrite, str) or not rewrite.strip():
        raise _Invalid("\"rewrite\" must be a non-empty string; use the last user turn's text when "
                       "nothing needs resolving")
    gold = obj.get("gold_values", [])
    if not isinstance(gold, list) or not all(isinstance(v, str) for v in gold):
        raise _Invalid("\"gold_values\" must be a list of strings")
    ident = obj.get("id", default_id)
    if not isinstance(ident, str):
        raise _Invalid("\"id\" must be a string")
    return Example(turns, rewrite, ident, gold)


def _turn(obj: Any, n: int) -> Turn:
    """Validate the `n`-th (1-based) turn object and build its `Turn`."""
    if not isinstance(obj, dict):
        raise _Invalid(f"turn {n} must be an object with \"speaker\" and \"text\"")
    speaker, text, intent = obj.get("speaker"), obj.get("text"), obj.get("intent")
    if speaker not in SPEAKERS:
        raise _Invalid(f"turn {n} has \"speaker\" {speaker!r}; use one of {', '.join(SPEAKERS)}")
    if not isinstance(text, str):
        raise _Invalid(f"turn {n} needs a string \"text\"")
    if intent is not None and not isinstance(intent, str):
        raise _Invalid(f"turn {n}: \"intent\" must be a string")
    entities = obj.get("entities", [])
    if not isinstance(entities, list):
        raise _Invalid(f"turn {n}: \"entities\" must be a list")
    return Turn(speaker, text, intent, [_entity(e, text, n) for e in entities])


def _entity(obj: Any, text: str, n: int) -> EntitySpan:
    """Validate one entity of turn `n` against its `text` and build its `EntitySpan`."""
    if not isinstance(obj, dict):
        raise _Invalid(f"turn {n}: each entity must be an object with start, end and entity")
    start, end, entity, value = (obj.get(k) for k in ("start", "end", "entity", "value"))
    ints = all(isinstance(i, int) and not isinstance(i, bool) for i in (start, end))
    if not ints or not 0 <= start < end <= len(text):
        raise _Invalid(f"turn {n}: entity start {start!r} / end {end!r} must be integers with "
                       f"0 <= start < end <= {len(text)} (the text's length)")
    if not isinstance(entity, str) or not entity:
        raise _Invalid(f"turn {n}: entity at {start}-{end} needs a non-empty string \"entity\"")
    if value is not None and not isinstance(value, str):
        raise _Invalid(f"turn {n}: entity \"value\" must be a string")
    return EntitySpan(start, end, entity, text[start:end] if value is None else value)
