"""Reader for Rasa-style YAML rewrite data, and the parser of Rasa's entity annotations.

```yaml
version: "3.1"
rewrites:
- id: artist-1                  # optional
  conversation:
  - user: who sings [believer](song)
    intent: ask_artist          # optional, user turns only
  - bot: "'[Believer](song)' is by [Imagine Dragons](artist)"
  - user: play their latest album
  rewrite: play [Imagine Dragons](artist)' latest album
```

Texts may annotate entities as `[text](entity)` or `[text]{"entity": "name", "value": "v"}`;
the values annotated in `rewrite` become the example's gold values.
"""
import json
import re
from pathlib import Path
from typing import Any, List, Tuple

import yaml

from cqr_rasa.dialogue import BOT, USER, EntitySpan, Example, Turn
from cqr_rasa.readers import DataError, PathLike, read_text

BRACKET = re.compile(r"[\[\]]")
QUOTE_HINT = "quote texts that start with '[' or contain ': ', '{' or '#'"


def parse_annotated(text: str) -> Tuple[str, List[EntitySpan]]:
    """Strip entity annotations from `text`; return the plain text and spans into it.

    Raises `ValueError` (naming the 1-based character position) on unbalanced brackets, a
    `[...]` not followed by `(entity)` or a JSON object with an "entity" string, or empty parts.
    """
    plain, spans, pos = "", [], 0
    while True:
        match = BRACKET.search(text, pos)
        if match is None:
            return plain + text[pos:], spans
        opening = match.start()
        plain += text[pos:opening]
        if match.group() == "]":
            raise ValueError(f"']' at character {opening + 1} has no matching '['")
        close = text.find("]", opening + 1)
        nested = text.find("[", opening + 1, close)
        if close < 0 or nested >= 0:
            raise ValueError(f"'[' at character {opening + 1} is not closed by ']' before the next "
                             "'[' or the end of the text")
        inner, after = text[opening + 1:close], close + 1
        if not inner.strip():
            raise ValueError(f"'[]' at character {opening + 1} annotates no text")
        if text.startswith("(", after):
            end = text.find(")", after)
            if end < 0:
                raise ValueError(f"'(' at character {after + 1} is not closed by ')'")
            entity, value, pos = text[after + 1:end].strip(), inner, end + 1
        elif text.startswith("{", after):
            try:
                spec, pos = json.JSONDecoder().raw_decode(text, after)
            except json.JSONDecodeError as err:
                raise ValueError(f"'{{' at character {after + 1} does not start a valid JSON "
                                 f"object ({err.msg})") from None
            entity, value = spec.get("entity"), spec.get("value")
            value = inner if value is None else str(value)
        else:
            raise ValueError(f"'[{inner}]' at character {opening + 1} must be followed by "
                             "'(entity)' or '{\"entity\": \"name\"}'")
        if not isinstance(entity, str) or not entity:
            raise ValueError(f"annotation of '{inner}' at character {opening + 1} names no entity")
        spans.append(EntitySpan(len(plain), len(plain) + len(inner), entity, value))
        plain += inner


def read_rasa_yaml(path: PathLike) -> List[Example]:
    """Read a YAML file with a top-level `rewrites:` list into `Example`s."""
    path = Path(path)
    text = read_text(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        if mark is None:
            raise DataError(path, None, f"YAML syntax error ({err}); {QUOTE_HINT}") from None
        lines = text.splitlines()
        source = lines[mark.line] if mark.line < len(lines) else ""
        problem = getattr(err, "problem", err)
        raise DataError(path, f"line {mark.line + 1}", f"YAML syntax error at column "
                        f"{mark.column + 1} ({problem}) in {source.strip()!r}; "
                        f"{QUOTE_HINT}") from None
    if not isinstance(data, dict) or not isinstance(data.get("rewrites"), list):
        raise DataError(path, None, "the file needs a top-level `rewrites:` list, one item per "
                        "example with `conversation:` and `rewrite:`")
    return [_example(item, path, n) for n, item in enumerate(data["rewrites"], 1)]


def _example(item: Any, path: Path, n: int) -> Example:
    """Validate the `n`-th (1-based) item of `rewrites` and build its `Example`."""
    where = f"rewrite example {n}"
    if not isinstance(item, dict) or not isinstance(item.get("conversation"), list) \
            or not item["conversation"]:
        raise DataError(path, where, "needs a non-empty `conversation:` list of `- user: ...` / "
                        "`- bot: ...` turns")
    turns = [_turn(turn, path, f"{where}, turn {m}")
             for m, turn in enumerate(item["conversation"], 1)]
    if turns[-1].speaker != USER:
        raise DataError(path, where, "the last turn must be a `user:` turn (the utterance to "
                        "rewrite); drop trailing bot turns")
    rewrite = item.get("rewrite")
    if rewrite is None or (isinstance(rewrite, str) and not rewrite.strip()):
        raise DataError(path, where, "missing `rewrite:`; write `rewrite:` equal to the last user "
                        "turn when nothing needs resolving")
    if not isinstance(rewrite, str):
        raise DataError(path, where, f"`rewrite:` must be a string; {QUOTE_HINT}")
    rewrite, spans = _parse(rewrite, path, f"{where}, rewrite")
    ident = item.get("id", f"{path.name}:{n}")
    if not isinstance(ident, (str, int)):
        raise DataError(path, where, "`id:` must be a string")
    gold = list(dict.fromkeys(span.value for span in spans))
    return Example(turns, rewrite, str(ident), gold)


def _turn(turn: Any, path: Path, where: str) -> Turn:
    """Validate one `conversation` turn and build its `Turn`."""
    keys = set(turn) if isinstance(turn, dict) else set()
    speakers = keys & {USER, BOT}
    allowed = {USER, "intent"} if USER in speakers else {BOT}
    if len(speakers) != 1 or not keys <= allowed:
        raise DataError(path, where, "a turn must be a mapping with exactly one of `user:` or "
                        "`bot:` (user turns may add `intent:`)")
    speaker = speakers.pop()
    text, intent = turn[speaker], turn.get("intent")
    if not isinstance(text, str) or not text.strip():
        raise DataError(path, where, f"`{speaker}:` needs a non-empty text; {QUOTE_HINT} "
                        "(and words YAML reads as booleans or numbers, such as yes or 42)")
    if "intent" in turn and (not isinstance(intent, str) or not intent.strip()):
        raise DataError(path, where, "`intent:` must be a non-empty intent name")
    plain, spans = _parse(text, path, where)
    return Turn(speaker, plain, intent.strip() if intent else None, spans)


def _parse(text: str, path: Path, where: str) -> Tuple[str, List[EntitySpan]]:
    """`parse_annotated` on the stripped `text`, reporting errors as `DataError`."""
    try:
        return parse_annotated(text.strip())
    except ValueError as err:
        raise DataError(path, where, f"bad entity annotation: {err}") from None
