"""From dialogues to model inputs: tokens, BIO slot tags, delexicalized entity roles, ids.

Everything here is pure bookkeeping on lists; `pad_sources` and `make_batch` turn encoded examples
into arrays and tensors.
"""
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch

from cqr_rasa.dialogue import BOT, USER, Turn

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"
SPECIALS = (PAD, UNK, BOS, EOS)
PAD_ID, UNK_ID, BOS_ID, EOS_ID = range(4)
NO_LABEL = "O"
MAX_ROLES = 8  # ENTITYU1..ENTITYU8 and ENTITYS1..ENTITYS8; later entities share the last class
MAX_DISTANCE = 15  # turns further back than this share one distance embedding


class Token(NamedTuple):
    text: str
    start: int
    end: int


class Tokenizer:
    """spaCy's rule-based English tokenizer (`spacy.blank("en")`, nothing downloaded)."""

    CACHE_SIZE = 4096  # texts remembered: a bot's history turns are tokenized again each turn

    def __init__(self) -> None:
        import spacy

        self._tokenizer = spacy.blank("en").tokenizer
        self._cache: Dict[str, Tuple[Token, ...]] = {}

    def __call__(self, text: str) -> Tuple[Token, ...]:
        tokens = self._cache.get(text)
        if tokens is None:
            if len(self._cache) >= self.CACHE_SIZE:
                self._cache.clear()
            tokens = self._cache[text] = tuple(
                Token(t.text, t.idx, t.idx + len(t.text))
                for t in self._tokenizer(text)
                if not t.is_space
            )
        return tokens


_ATTACH_LEFT = {",", ".", "?", "!", ";", ":", "%", ")", "]", "'s", "'S", "n't", "'re", "'ll",
                "'ve", "'m", "'d", "...", "’s"}
_ATTACH_RIGHT = {"(", "[", "$", "#"}


def detokenize(words: Sequence[str], glued: Optional[Sequence[Optional[bool]]] = None) -> str:
    """Joins tokens into natural text: "Imagine Dragons ' latest" -> "Imagine Dragons' latest".

    `glued[i]` says whether word i was written right after word i - 1 with no space (True) or
    with one (False), where the two were copied from neighbours in the dialogue ("gon na" ->
    "gonna", "4 pm" -> "4pm"); where it is None or not given, English rules decide. A "'" after
    a word ending in s is a possessive when that word is capitalized or the next is not
    ("Dragons' latest", "players' union"), otherwise it opens a quote ("is 'Believer'").
    """
    out: List[str] = []
    glue_next = open_quote = False
    for i, word in enumerate(words):
        known = glued[i] if glued is not None and out else None
        if known is not None:
            out.append(word if known else " " + word)
            if word in ("'", '"'):  # a space before a quote opens one; none closes it
                open_quote = glue_next = not known
            else:
                glue_next = word in _ATTACH_RIGHT
            continue
        if word in ("'", '"'):
            before = out[-1].strip() if out else ""
            after = words[i + 1] if i + 1 < len(words) else ""
            possessive = (word == "'" and not open_quote and before[-1:] in ("s", "S")
                          and (before[:1].isupper() or not after[:1].isupper()))
            if possessive or open_quote:  # attaches to the word before it
                out.append(word)
                open_quote = False
                glue_next = False
            else:  # opens a quote: attaches to the word after it
                out.append((" " if out and not glue_next else "") + word)
                open_quote = glue_next = True
            continue
        attach = not out or glue_next or word in _ATTACH_LEFT
        out.append(word if attach else " " + word)
        glue_next = word in _ATTACH_RIGHT
    return "".join(out).strip()


def glued_to_previous(tokens: Sequence[Token]) -> List[bool]:
    """For each token of one text, whether it follows the one before it with no space between."""
    return [k > 0 and token.start == tokens[k - 1].end for k, token in enumerate(tokens)]


def normalize_value(text: str) -> str:
    """Key for "same entity value": lowercase, inner whitespace collapsed."""
    return " ".join(text.lower().split())


@dataclass
class Vocab:
    """A list of strings and its inverse; index 0 is padding and index 1 unknown."""

    itos: List[str]
    stoi: Dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.stoi = {s: i for i, s in enumerate(self.itos)}

    @classmethod
    def build(cls, counts: Counter, min_count: int, specials: Sequence[str]) -> "Vocab":
        words = sorted((w for w, c in counts.items() if c >= min_count and w not in specials),
                       key=lambda w: (-counts[w], w))
        return cls(list(specials) + words)

    def __len__(self) -> int:
        return len(self.itos)

    def id(self, word: str) -> int:
        return self.stoi.get(word, UNK_ID)


class Source(NamedTuple):
    """An encoded dialogue window, one entry per token (all lists have the same length)."""

    words: List[str]  # surface forms, as written
    turn_index: List[int]  # index of the turn in the input list
    word_ids: List[int]  # input vocabulary (lowercased)
    speaker_ids: List[int]
    intent_ids: List[int]
    bio_ids: List[int]  # 0 pad, 1 O, 2 B, 3 I
    type_ids: List[int]  # slot type vocabulary
    role_ids: List[int]  # delexicalized entity class (ENTITYU1..., ENTITYS1...)
    distance_ids: List[int]  # 1 + turns back from the utterance (1 = the utterance itself)
    ext_ids: List[int]  # generation vocabulary id, or len(gen) + index into `oov`
    oov: List[str]  # lowercased source words outside the generation vocabulary
    utterance_start: int  # position of the utterance's first token
    glued: List[bool]  # the token follows the one before it in its turn with no space between


ROLE_NAMES = [PAD, NO_LABEL] + [f"ENTITY{s}{k}" for s in "US" for k in range(1, MAX_ROLES + 1)]
SPEAKER_IDS = {USER: 1, BOT: 2}
BIO_IDS = {NO_LABEL: 1, "B": 2, "I": 3}


def entity_roles(turns: Sequence[Turn]) -> Dict[Tuple[str, str], str]:
    """Delexicalized classes: ENTITYU1 is the first distinct value a user named, ENTITYS1 the bot's."""
    roles: Dict[Tuple[str, str], str] = {}
    counters = {USER: 0, BOT: 0}
    for turn in turns:
        for span in sorted(turn.entities, key=lambda s: s.start):
            key = (turn.speaker, normalize_value(turn.text[span.start:span.end]))
            if key not in roles:
                counters[turn.speaker] = min(counters[turn.speaker] + 1, MAX_ROLES)
                letter = "U" if turn.speaker == USER else "S"
                roles[key] = f"ENTITY{letter}{counters[turn.speaker]}"
    return roles


def token_tags(tokens: Sequence[Token], turn: Turn) -> List[Optional[Tuple[str, str, str]]]:
    """Per token: (BIO, slot type, normalized span text) for tokens inside an entity span."""
    tags: List[Optional[Tuple[str, str, str]]] = [None] * len(tokens)
    for span in turn.entities:
        inside = [i for i, t in enumerate(tokens) if t.start < span.end and t.end > span.start]
        value = normalize_value(turn.text[span.start:span.end])
        for k, i in enumerate(inside):
            if tags[i] is None:
                tags[i] = ("B" if k == 0 else "I", span.entity, value)
    return tags


class FeatureSpace:
    """The vocabularies and the mapping from turns to `Source` and from rewrites to target ids."""

    def __init__(self, words: Vocab, gen: Vocab, intents: Vocab, types: Vocab,
                 max_source_tokens: int = 256, max_target_tokens: int = 64) -> None:
        self.words, self.gen, self.intents, self.types = words, gen, intents, types
        self.max_source_tokens = max_source_tokens
        self.max_target_tokens = max_target_tokens
        self.tokenizer = Tokenizer()

    @classmethod
    def build(cls, dialogues: Iterable[Tuple[Sequence[Turn], Sequence[str]]],
              word_min_count: int = 2, gen_min_count: int = 3, **limits: int) -> "FeatureSpace":
        """Counts words, intents and slot types over (turns, rewrites) of the training data.

        The generation vocabulary keeps target words seen `gen_min_count` times; rarer words can
        only be copied from the dialogue, which is what makes unseen entities come out verbatim.
        """
        tokenizer = Tokenizer()
        word_counts: Counter = Counter()
        gen_counts: Counter = Counter()
        intents: Counter = Counter()
        types: Counter = Counter()
        for turns, rewrites in dialogues:
            for turn in turns:
                word_counts.update(t.text.lower() for t in tokenizer(turn.text))
                intents[turn.intent or NO_LABEL] += 1
                types.update(span.entity for span in turn.entities)
            for rewrite in rewrites:
                gen_counts.update(t.text.lower() for t in tokenizer(rewrite))
        return cls(
            Vocab.build(word_counts + gen_counts, word_min_count, (PAD, UNK)),
            Vocab.build(gen_counts, gen_min_count, SPECIALS),
            Vocab.build(intents, 1, (PAD, UNK, NO_LABEL)),
            Vocab.build(types, 1, (PAD, UNK, NO_LABEL)),
            **limits,
        )

    def encode_source(self, turns: Sequence[Turn]) -> Source:
        """Encodes a window of turns; the last is the utterance. Oldest tokens go first if too long."""
        roles = entity_roles(turns)
        rows: List[Tuple] = []
        for index, turn in enumerate(turns):
            tokens = self.tokenizer(turn.text)
            distance = min(len(turns) - 1 - index, MAX_DISTANCE) + 1
            for token, tag, glued in zip(tokens, token_tags(tokens, turn),
                                         glued_to_previous(tokens)):
                bio, entity, value = tag if tag else (NO_LABEL, NO_LABEL, "")
                role = roles.get((turn.speaker, value), NO_LABEL) if tag else NO_LABEL
                rows.append((token.text, index, self.words.id(token.text.lower()),
                             SPEAKER_IDS.get(turn.speaker, SPEAKER_IDS[USER]),
                             self._intent_id(turn.intent), BIO_IDS[bio],
                             self.types.id(entity), ROLE_NAMES.index(role), distance, glued))
        utterance_len = sum(1 for r in rows if r[1] == len(turns) - 1)
        keep = max(self.max_source_tokens, utterance_len)
        rows = rows[-keep:]
        columns = list(zip(*rows)) if rows else [()] * 10
        words = list(columns[0])
        ext_ids, oov = self.extend(words)
        return Source(words, list(columns[1]), list(columns[2]), list(columns[3]),
                      list(columns[4]), list(columns[5]), list(columns[6]), list(columns[7]),
                      list(columns[8]), ext_ids, oov, len(rows) - utterance_len,
                      list(columns[9]))

    def _intent_id(self, intent: Optional[str]) -> int:
        """Unknown intents count as no intent: training data often has none on its turns."""
        return self.intents.stoi.get(intent or NO_LABEL, self.intents.stoi[NO_LABEL])

    def extend(self, words: Sequence[str]) -> Tuple[List[int], List[str]]:
        """Extended-vocabulary ids of source words and the list of out-of-vocabulary words."""
        oov: Dict[str, int] = {}  # word -> extended id, in order of first appearance
        ids = []
        for word in words:
            key = word.lower()
            if key in self.gen.stoi:
                ids.append(self.gen.stoi[key])
            else:
                ids.append(oov.setdefault(key, len(self.gen) + len(oov)))
        return ids, list(oov)

    def encode_target(self, text: str, source: Source) -> List[int]:
        """Target ids over the extended vocabulary, ending in EOS; uncopyable rare words are UNK."""
        ids = []
        for token in self.tokenizer(text)[: self.max_target_tokens - 1]:
            key = token.text.lower()
            if key in self.gen.stoi:
                ids.append(self.gen.stoi[key])
            elif key in source.oov:
                ids.append(len(self.gen) + source.oov.index(key))
            else:
                ids.append(UNK_ID)
        return ids + [EOS_ID]

    def to_dict(self) -> Dict:
        return {"words": self.words.itos, "gen": self.gen.itos, "intents": self.intents.itos,
                "types": self.types.itos, "max_source_tokens": self.max_source_tokens,
                "max_target_tokens": self.max_target_tokens}

    @classmethod
    def from_dict(cls, data: Dict) -> "FeatureSpace":
        return cls(Vocab(data["words"]), Vocab(data["gen"]), Vocab(data["intents"]),
                   Vocab(data["types"]), int(data["max_source_tokens"]),
                   int(data["max_target_tokens"]))


class Batch(NamedTuple):
    """Padded tensors for a batch; `features` stacks the seven per-token id columns."""

    features: torch.Tensor  # (batch, src_len, 7) long
    source_mask: torch.Tensor  # (batch, src_len) bool, True on real tokens
    utterance_mask: torch.Tensor  # (batch, src_len) bool, True on the utterance's tokens
    ext_ids: torch.Tensor  # (batch, src_len) long
    max_oov: int
    targets: Optional[torch.Tensor]  # (batch, tgt_len) long, PAD after EOS
    needs_rewrite: Optional[torch.Tensor]  # (batch,) float


FEATURE_COLUMNS = ("word_ids", "speaker_ids", "intent_ids", "bio_ids", "type_ids", "role_ids",
                   "distance_ids")


class Padded(NamedTuple):
    """Encoded sources padded to one length, as numpy arrays (for torch and for numpy inference)."""

    features: np.ndarray  # (batch, src_len, 7) int64, the FEATURE_COLUMNS
    utterance: np.ndarray  # (batch, src_len) bool, True on the utterance's tokens
    ext_ids: np.ndarray  # (batch, src_len) int64
    max_oov: int

    @property
    def valid(self) -> np.ndarray:
        return self.features[..., 0] != PAD_ID


def pad_sources(sources: Sequence[Source]) -> Padded:
    length = max(1, max(len(s.words) for s in sources))
    features = np.zeros((len(sources), length, len(FEATURE_COLUMNS)), dtype=np.int64)
    ext = np.zeros((len(sources), length), dtype=np.int64)
    utterance = np.zeros((len(sources), length), dtype=bool)
    for b, source in enumerate(sources):
        n = len(source.words)
        if n:
            features[b, :n] = np.array([getattr(source, name) for name in FEATURE_COLUMNS]).T
            ext[b, :n] = source.ext_ids
            utterance[b, source.utterance_start:n] = True
    return Padded(features, utterance, ext, max(len(s.oov) for s in sources))


def make_batch(sources: Sequence[Source], targets: Optional[Sequence[List[int]]] = None,
               needs_rewrite: Optional[Sequence[bool]] = None) -> Batch:
    """Pads encoded sources (and targets) into one `Batch`."""
    padded = pad_sources(sources)
    target_tensor = None
    if targets is not None:
        target_tensor = torch.zeros(len(targets), max(len(t) for t in targets), dtype=torch.long)
        for b, target in enumerate(targets):
            target_tensor[b, : len(target)] = torch.tensor(target)
    flags = None if needs_rewrite is None else torch.tensor(needs_rewrite, dtype=torch.float)
    return Batch(torch.from_numpy(padded.features), torch.from_numpy(padded.valid),
                 torch.from_numpy(padded.utterance), torch.from_numpy(padded.ext_ids),
                 padded.max_oov, target_tensor, flags)


_SPACE = re.compile(r"\s+")


def clean_text(text: str) -> str:
    """Collapses whitespace and drops control characters (the tokenizer must never see NUL)."""
    if not text.isprintable():
        text = "".join(c if c.isprintable() else " " for c in text)
    return _SPACE.sub(" ", text).strip()
