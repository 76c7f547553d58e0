"""Readers that turn rewrite data files (CQR JSON, JSONL, Rasa-style YAML) into `Example`s."""
from pathlib import Path
from typing import List, Optional, Union

from cqr_rasa.dialogue import Example

PathLike = Union[str, Path]
PROTOCOLS = ("online", "full")


class DataError(ValueError):
    """A data file that cannot be read; the message names the file, the position and the fix."""

    def __init__(self, path: PathLike, where: Optional[str], problem: str):
        self.path = str(path)
        self.where = where
        super().__init__(f"{path}, {where}: {problem}" if where else f"{path}: {problem}")


def require_file(path: PathLike) -> None:
    """Raise `DataError` unless `path` is an existing regular file."""
    if not Path(path).is_file():
        raise DataError(path, None, "file not found (check the path; it must be a regular file)")


def read_text(path: PathLike) -> str:
    """Return the UTF-8 text of `path`, raising `DataError` when it is missing or undecodable."""
    path = Path(path)
    require_file(path)
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataError(path, None, f"not UTF-8 text ({err}); save the file as UTF-8") from None


def check_protocol(protocol: str) -> None:
    """Raise `ValueError` unless `protocol` is one of `PROTOCOLS`."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}; got {protocol!r}")


# The format modules import DataError and read_text from here, so they come after them.
from cqr_rasa.readers.cqr_json import cqr_examples, is_cqr, load_json, read_cqr_json  # noqa: E402
from cqr_rasa.readers.jsonl import read_jsonl  # noqa: E402
from cqr_rasa.readers.rasa_yaml import parse_annotated, read_rasa_yaml  # noqa: E402

SUPPORTED = (
    ".jsonl (one JSON example per line), .yml/.yaml (Rasa-style file with a top-level "
    "`rewrites:` list) or .json (CQR JSON: an array of objects with a \"dialogue\" key)"
)


def read_examples(path: PathLike, protocol: str = "full") -> List[Example]:
    """Read `path`, choosing the reader from its suffix (and, for .json, its content).

    `protocol` ("online" or "full") only affects CQR JSON files.
    """
    check_protocol(protocol)
    path = Path(path)
    require_file(path)
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return read_jsonl(path)
    if suffix in (".yml", ".yaml"):
        return read_rasa_yaml(path)
    if suffix == ".json":
        data = load_json(path)
        if is_cqr(data):
            return cqr_examples(data, path, protocol)
        raise DataError(path, None, f"JSON content is not CQR JSON; supported formats: {SUPPORTED}")
    raise DataError(path, None, f"unsupported file type {suffix or '(none)'!r}; use {SUPPORTED}")


__all__ = [
    "DataError",
    "PROTOCOLS",
    "parse_annotated",
    "read_cqr_json",
    "read_examples",
    "read_jsonl",
    "read_rasa_yaml",
]
