"""Plain data carried between the readers, the rewriter, the evaluation and the Rasa adapter."""
from dataclasses import dataclass, field
from typing import Dict, List, Optional

USER = "user"
BOT = "bot"
SPEAKERS = (USER, BOT)


@dataclass(frozen=True)
class EntitySpan:
    """A character span of a turn's text that names an entity (`value` defaults to the span)."""

    start: int
    end: int
    entity: str
    value: Optional[str] = None


@dataclass
class Turn:
    """One turn of a dialogue: who spoke, what they said, and what the NLU made of it."""

    speaker: str
    text: str
    intent: Optional[str] = None
    entities: List[EntitySpan] = field(default_factory=list)


@dataclass
class Example:
    """A dialogue whose last turn is the user utterance to rewrite into `rewrite`.

    `rewrite` equals the last turn's text when nothing needs resolving. `gold_values` are the
    entity values the rewrite must carry (used by the slot metrics); `alternatives` are further
    acceptable rewrites (extra training targets); `category` names the reference kinds (CQR flags).
    """

    turns: List[Turn]
    rewrite: str
    id: str = ""
    gold_values: List[str] = field(default_factory=list)
    alternatives: List[str] = field(default_factory=list)
    category: List[str] = field(default_factory=list)

    @property
    def utterance(self) -> Turn:
        return self.turns[-1]

    @property
    def context(self) -> List[Turn]:
        return self.turns[:-1]

    @property
    def needs_rewrite(self) -> bool:
        return self.rewrite.strip() != self.utterance.text.strip()


@dataclass
class Rewrite:
    """What the rewriter returns for one dialogue.

    `sources` maps each inserted output word (index into `tokens`) to the index of the context turn
    it was copied from (`None` when it was generated from the vocabulary). `dropped` holds the
    utterance's words that a refused rewrite left out (see `Rewriter`); the text is then the
    utterance's.
    """

    text: str
    confidence: float
    changed: bool
    tokens: List[str] = field(default_factory=list)
    sources: Dict[int, Optional[int]] = field(default_factory=dict)
    rewrite_probability: float = 0.0
    dropped: List[str] = field(default_factory=list)

