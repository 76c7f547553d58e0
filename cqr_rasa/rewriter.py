"""Rewriter: the one object the Rasa component, the CLI and the evaluation use.

`Rewriter.rewrite(turns)` takes a dialogue whose last turn is the user utterance and returns a
`Rewrite`; `save`/`load` keep weights in safetensors and everything else in validated JSON.
"""
import hashlib
import json
import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import (TYPE_CHECKING, Collection, Dict, Iterable, List, Optional, Sequence, Set,
                    Tuple, Union)

import numpy as np
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from spacy.lang.en.stop_words import STOP_WORDS

from cqr_rasa.dialogue import Example, Rewrite, Turn
from cqr_rasa.features import (NO_LABEL, PAD_ID, UNK_ID, FeatureSpace, Source, clean_text,
                               detokenize)
from cqr_rasa.model import Engine, Hypothesis, NetworkConfig, PointerGenerator, beam_search, greedy
from cqr_rasa.model.decoding import doubled_ids
from cqr_rasa.model.inference import Encoding, Prepared, State

if TYPE_CHECKING:
    from cqr_rasa.model.compiled import CompiledGreedy

FORMAT_VERSION = 1
WEIGHTS_FILE = "weights.safetensors"
CONFIG_FILE = "rewriter.json"
# the search for an insertion (see `RewriterConfig`): its beam width, and how many words it may
# add, which bounds its cost (16 rather than 64 changed 1 of 940 cross-validated CQR rewrites)
INSERT_BEAM, INSERT_WORDS = 4, 16


class ModelFileError(ValueError):
    """A saved rewriter that cannot be loaded; the message names the file and the fix."""


@dataclass
class RewriterConfig:
    """How the trained network is used at run time."""

    max_history_turns: int = 8  # context turns kept before the utterance
    beam_size: int = 1  # 1 = greedy decoding
    rewrite_threshold: float = 0.5  # rewrite only when P(rewrite needed) reaches this
    # no n-gram of this many words occurs more than `max_ngram_count` times (0 = no limit): the
    # CQR rewrites often name a place twice ("the address of X and directions to X"), but three
    # times is a decoder running in circles
    no_repeat_ngram: int = 3
    max_ngram_count: int = 2
    eos_penalty: float = 0.0  # beam search only: taken from EOS's log-probability when ranking
    # when P(rewrite needed) reaches `insert_threshold` but decoding wrote the utterance
    # back unchanged ("set the GPS please"), a beam search looks for the utterance with copied
    # words inserted ("... please to Starbucks 2 miles away"); it is taken if its mean log-prob.
    # per word is at most `insert_margin` below the unchanged one's (threshold 1.0: never)
    insert_threshold: float = 0.99
    insert_margin: float = 0.3

    def __post_init__(self) -> None:
        for name, low in (("max_history_turns", 0), ("beam_size", 1), ("no_repeat_ngram", 0),
                          ("max_ngram_count", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"`{name}` must be an integer >= {low}, got {value!r}.")
        for name, high in (("eos_penalty", math.inf), ("insert_margin", math.inf),
                           ("rewrite_threshold", 1.0), ("insert_threshold", 1.0)):
            value = getattr(self, name)
            if (not isinstance(value, (int, float)) or isinstance(value, bool)
                    or not 0 <= value <= high):
                allowed = "a number >= 0" if high == math.inf else f"a number within [0, {high:g}]"
                raise ValueError(f"`{name}` must be {allowed}, got {value!r}.")

    def decoding(self) -> Dict[str, float]:
        """The settings deciding whether and how a rewrite is decoded, as reports record them."""
        return {"beam_size": self.beam_size, "eos_penalty": self.eos_penalty,
                "no_repeat_ngram": self.no_repeat_ngram,
                "max_ngram_count": self.max_ngram_count,
                "rewrite_threshold": self.rewrite_threshold,
                "insert_threshold": self.insert_threshold, "insert_margin": self.insert_margin}


class Rewriter:
    """A trained pointer-generator with its vocabularies and run-time settings."""

    def __init__(self, features: FeatureSpace, network: PointerGenerator,
                 config: Optional[RewriterConfig] = None,
                 droppable: Optional[Collection[str]] = None) -> None:
        self.features = features
        # words (lowercased) the training rewrites left out of an utterance, which a rewrite may
        # leave out too (see `_dropped_own_words`); None for models saved before it existed
        self.droppable = None if droppable is None else frozenset(droppable)
        self.network = network.eval()
        self.engine = Engine(self.network)
        self.config = config or RewriterConfig()
        self._compiled: Optional["CompiledGreedy"] = None  # its module imports TensorFlow

    @property
    def compiled(self) -> "CompiledGreedy":
        """The greedy decoder compiled by XLA (`cqr_rasa.model.compiled`), made on first use."""
        if self._compiled is None:
            from cqr_rasa.model.compiled import CompiledGreedy
            self._compiled = CompiledGreedy(self.engine, self.features.max_target_tokens)
        return self._compiled

    def warm_up(self, up_to: int = 96) -> None:
        """Compiles the programs for single dialogues of up to `up_to` words now; a longer
        one's is compiled on its first use (about a second each)."""
        if self.config.beam_size == 1:
            self.compiled.warm_up(up_to)

    def rewrite(self, turns: Sequence[Turn],
                copy_types: Optional[Collection[str]] = None) -> Rewrite:
        """Rewrites the last turn of `turns` so it needs none of the earlier ones.

        `copy_types`, when given, are the entity types that may be copied from the context
        turns: the words of a context entity span of another type the network knows are not
        copied (a common word among them may still be generated). None: no restriction.

        Decoded greedily, the dialogue is rewritten by the compiled program (see `warm_up`),
        with beam search in numpy: the same rewrite as `rewrite_batch`, the numbers equal to
        float32 rounding."""
        return self._rewrite([turns], [copy_types], single=True)[0]

    def rewrite_batch(self, dialogues: Sequence[Sequence[Turn]],
                      copy_types: Optional[Sequence[Optional[Collection[str]]]] = None
                      ) -> List[Rewrite]:
        """Rewrites many dialogues at once, in numpy, even a batch of one (encoding and greedy
        decoding are batched); `copy_types` holds each dialogue's (see `rewrite`)."""
        return self._rewrite(dialogues, copy_types, single=False)

    def _rewrite(self, dialogues: Sequence[Sequence[Turn]],
                 copy_types: Optional[Sequence[Optional[Collection[str]]]],
                 single: bool) -> List[Rewrite]:
        results: List[Optional[Rewrite]] = [None] * len(dialogues)
        pending: List[Tuple[int, List[Turn], int]] = []
        sources: List[Source] = []
        # utterances the decoder could not write out whole are left as they are
        longest = self.features.max_target_tokens - 8
        for i, turns in enumerate(dialogues):
            window, offset = self.window(turns)
            text = window[-1].text if window else ""
            # whitespace words never outnumber tokens: huge inputs stop here, before encoding
            if len(window) >= 2 and text and len(text.split()) <= longest:
                source = self.features.encode_source(window)
                own = source.words[source.utterance_start:]
                # nor utterances wholly in characters the network never learned from (emoji,
                # other alphabets): nothing it learned applies to them
                if len(own) <= longest and not all(_unlearned(w, self.features) for w in own):
                    pending.append((i, window, offset))
                    sources.append(source)
                    continue
            results[i] = Rewrite(text, 1.0, False)
        if pending:
            decoded = self._decode(sources, pending, [
                None if copy_types is None else copy_types[i] for i, _, _ in pending], single)
            for (i, _, _), rewrite in zip(pending, decoded):
                results[i] = rewrite
        return results  # type: ignore[return-value]

    def window(self, turns: Sequence[Turn]) -> Tuple[List[Turn], int]:
        """The last `max_history_turns` context turns plus the utterance, with clean text."""
        keep = list(turns)[-(self.config.max_history_turns + 1):]
        window = []
        for turn in keep:
            text = clean_text(turn.text)
            entities = turn.entities if text == turn.text else []
            window.append(Turn(turn.speaker, text, turn.intent, entities))
        return window, len(turns) - len(keep)

    def _uncopyable(self, source: Source, copy_types: Optional[Collection[str]]) -> List[int]:
        """The context positions inside entity spans of a known type not in `copy_types`."""
        if copy_types is None:
            return []
        types = self.features.types.stoi
        open_ids = {PAD_ID, UNK_ID, types[NO_LABEL]} | {types[t] for t in copy_types
                                                        if t in types}
        return [i for i, t in enumerate(source.type_ids[:source.utterance_start])
                if t not in open_ids]

    def _decode(self, sources: List[Source], pending: List[Tuple[int, List[Turn], int]],
                copy_types: List[Optional[Collection[str]]], single: bool) -> List[Rewrite]:
        config, max_len = self.config, self.features.max_target_tokens
        threshold, first = config.rewrite_threshold, sources[0]
        if single and config.beam_size == 1:
            # encoded, and decoded if it needs a rewrite, by one compiled program. On 200 CQR dev
            # dialogues (D''', medians, numpy against the program): turns left unchanged 0.82
            # against 0.77 ms under 32 words, 1.93 against 1.30 ms at 64-95; rewritten turns
            # 3.3-5.9 against 1.5-2.6 ms. On the example bot's 12-word dialogue the program costs
            # 0.23 ms more on "thanks" and saves 0.7 ms on "play their latest album", the turns
            # whose bound is the tighter.
            found = self.compiled.rewrite(first, self._uncopyable(first, copy_types[0]),
                                          threshold, config.no_repeat_ngram,
                                          config.max_ngram_count)
            p_rewrite, prepared, state = [found.p_rewrite], found.prepared, found.state
            hyps: List[Optional[Hypothesis]] = [found.hypothesis]
        else:
            encoding, p_rewrite = self.engine.encode(sources)
            hyps = [None] * len(sources)
            if max(p_rewrite) >= threshold:  # only then: most turns stop at the encoding
                prepared, state = self._prepare(encoding, sources, copy_types)
        if max(p_rewrite) >= threshold:
            if None in hyps:  # not decoded by the program, or its rewrite broke the rules
                doubled = [doubled_ids(source) for source in sources]
                hyps = ([beam_search(self.engine, prepared.take(row), state.take(row),
                                     config.beam_size, max_len, config.no_repeat_ngram,
                                     config.max_ngram_count, config.eos_penalty, doubled[row[0]])
                         for row in np.arange(len(sources))[:, None]] if config.beam_size > 1
                        else greedy(self.engine, prepared, state, max_len,
                                    config.no_repeat_ngram, config.max_ngram_count, doubled))
            for row, (source, hyp, p) in enumerate(zip(sources, hyps, p_rewrite)):
                if (config.insert_threshold < 1.0 and p >= config.insert_threshold
                        and hyp.ids == source.ext_ids[source.utterance_start:]):
                    hyps[row] = self._insertion(prepared.take([row]), state.take([row]), source,
                                                hyp)
        out = []
        for (_, window, offset), source, hyp, p in zip(pending, sources, hyps, p_rewrite):
            utterance = window[-1].text
            if p < threshold:
                out.append(Rewrite(utterance, 1.0 - p, False, rewrite_probability=p))
                continue
            words, turns, glued, last = [], [], [], None
            positions: Dict[int, List[int]] = {}  # of each id in the dialogue
            for i, e in enumerate(source.ext_ids):
                positions.setdefault(e, []).append(i)
            for k, (token, attention, copied) in enumerate(
                    zip(hyp.ids, hyp.attention, hyp.copied)):
                word, at = surface(token, attention, source, positions.get(token, []),
                                   self.features, k == 0)
                words.append(word)
                turns.append(None if at is None or not copied else source.turn_index[at])
                # spaced as in the dialogue where two neighbours there are neighbours here
                glued.append(source.glued[at] if at is not None and last is not None
                             and at == last + 1 else None)
                last = at
            text = detokenize(words, glued)
            confidence = p * math.exp(sum(hyp.logps) / max(1, len(hyp.logps)))
            dropped = _dropped_own_words(source, self.features, words, self.droppable)
            if not text or " ".join(text.split()) == utterance or dropped:
                out.append(Rewrite(utterance, confidence, False, rewrite_probability=p,
                                   dropped=dropped))
                continue
            own = {w.lower() for w in source.words[source.utterance_start:]}
            sources_of = {k: (None if t is None else t + offset)
                          for k, (w, t) in enumerate(zip(words, turns)) if w.lower() not in own}
            out.append(Rewrite(text, confidence, True, words, sources_of, p))
        return out

    def _prepare(self, encoding: Encoding, sources: List[Source],
                 copy_types: List[Optional[Collection[str]]]) -> Tuple[Prepared, State]:
        """`Engine.prepare`, with the positions `copy_types` excludes made uncopyable."""
        prepared, state = self.engine.prepare(encoding)
        uncopyable = [self._uncopyable(source, types)
                      for source, types in zip(sources, copy_types)]
        if any(uncopyable):
            # PAD's id, which decoding never writes, takes such positions' copy mass
            ext_ids = prepared.ext_ids.copy()
            for row, positions in enumerate(uncopyable):
                ext_ids[row, positions] = PAD_ID
            prepared = prepared._replace(ext_ids=ext_ids)
        return prepared, state

    def _insertion(self, prepared: Prepared, state: State, source: Source,
                   unchanged: Hypothesis) -> Hypothesis:
        """The best rewrite that inserts into the utterance a word copied from the context that
        the utterance lacks, if it scores within `insert_margin` of `unchanged`; else
        `unchanged`."""
        config, own = self.config, source.ext_ids[source.utterance_start:]
        gen = self.features.gen

        def inserts_a_new_word(hyp: Hypothesis) -> bool:
            rest = iter(hyp.ids)
            if not all(any(i == b for i in rest) for b in own):  # `own` in order, words added
                return False
            return any(copied and i not in own and any(ch.isalnum() for ch in (
                gen.itos[i] if i < len(gen) else source.oov[i - len(gen)]))
                for i, copied in zip(hyp.ids, hyp.copied))

        found = beam_search(self.engine, prepared, state, INSERT_BEAM,
                            min(self.features.max_target_tokens, len(own) + INSERT_WORDS),
                            config.no_repeat_ngram, config.max_ngram_count, config.eos_penalty,
                            doubled_ids(source), accept=inserts_a_new_word,
                            floor=unchanged.score - config.insert_margin)
        return unchanged if found is None else found

    def save(self, directory: Union[str, Path]) -> Path:
        """Writes `weights.safetensors` and `rewriter.json` (config, vocabularies, checksum)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        weights = directory / WEIGHTS_FILE
        state = {k: v.detach().cpu().contiguous() for k, v in self.network.state_dict().items()}
        save_file(state, str(weights))
        meta = {"format_version": FORMAT_VERSION, "network": self.network.config.to_dict(),
                "features": self.features.to_dict(), "rewriter": asdict(self.config),
                "droppable_words": None if self.droppable is None else sorted(self.droppable),
                "weights_sha256": _sha256(weights)}
        (directory / CONFIG_FILE).write_text(json.dumps(meta, indent=1), encoding="utf-8")
        return directory

    @classmethod
    def load(cls, directory: Union[str, Path], **overrides: object) -> "Rewriter":
        """Loads a saved rewriter; `overrides` replace `RewriterConfig` fields."""
        directory = Path(directory)
        config_path, weights = directory / CONFIG_FILE, directory / WEIGHTS_FILE
        for path in (config_path, weights):
            if not path.is_file():
                raise ModelFileError(f"{path}: missing. A rewriter directory holds {CONFIG_FILE} "
                                     f"and {WEIGHTS_FILE}, as written by `cqr-rasa train`.")
        try:
            meta = json.loads(config_path.read_text(encoding="utf-8"))
            if meta.get("format_version") != FORMAT_VERSION:
                raise ModelFileError(f"{config_path}: format_version {meta.get('format_version')!r}"
                                     f" is not {FORMAT_VERSION}; retrain with this cqr_rasa.")
            network_config = NetworkConfig(**meta["network"])
            features = FeatureSpace.from_dict(meta["features"])
            known = {f.name for f in fields(RewriterConfig)}
            saved = RewriterConfig(**{k: v for k, v in meta["rewriter"].items() if k in known})
            droppable = meta.get("droppable_words")
            if droppable is not None and not (isinstance(droppable, list)
                                              and all(isinstance(w, str) for w in droppable)):
                raise ValueError("droppable_words must be a list of strings")
        except ModelFileError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise ModelFileError(f"{config_path}: not a valid rewriter config ({error!r}); "
                                 f"retrain with `cqr-rasa train`.") from error
        if _sha256(weights) != meta.get("weights_sha256"):
            raise ModelFileError(f"{weights}: checksum differs from the one in {CONFIG_FILE}; "
                                 f"the file is truncated or was altered. Retrain or restore it.")
        # outside the try: a bad override is the caller's error, not the saved file's
        config = replace(saved, **{k: v for k, v in overrides.items() if k in known})
        try:
            state = load_file(str(weights))
            network = PointerGenerator(network_config)
            network.load_state_dict(state)
        except (SafetensorError, RuntimeError, OSError) as error:
            raise ModelFileError(f"{weights}: cannot be loaded ({error}); retrain.") from error
        return cls(features, network, config, droppable)


def surface(token: int, attention: Sequence[float], source: Source, hits: List[int],
            features: FeatureSpace, first: bool) -> Tuple[str, Optional[int]]:
    """The written form of an output id and the source position it was taken from (None if it is
    not in the source); `hits` are the positions of `token` in the source.

    A copied word keeps its exact spelling; a common word is taken from the dialogue only where it
    is not capitalized merely for starting a turn.
    """
    gen = features.gen
    if not hits:
        return gen.itos[token], None
    if token < len(gen) and not first:
        inner = [i for i in hits if i > 0 and source.turn_index[i - 1] == source.turn_index[i]]
        if not inner:
            return gen.itos[token], hits[0]
        hits = inner
    best = max(hits, key=lambda i: float(attention[i]))
    return source.words[best], best


def droppable_words(examples: Iterable[Example], features: FeatureSpace) -> Set[str]:
    """The words (lowercased) that some rewrite, or alternative rewrite, of `examples` leaves out
    of its utterance: "their", "there", "it", "ok", ..."""
    def words(text: str) -> Set[str]:
        return {token.text.lower() for token in features.tokenizer(text)}

    dropped: Set[str] = set()
    for example in examples:
        own = words(example.utterance.text)
        for target in [example.rewrite] + example.alternatives:
            dropped |= own - words(target)
    return dropped


def _dropped_own_words(source: Source, features: FeatureSpace, words: Sequence[str],
                       droppable: Optional[Collection[str]]) -> List[str]:
    """The words of the utterance a rewrite left out that it should have kept.

    Resolving a reference replaces a few words ("their", "there"); a rewrite that loses others
    ("could you please play their latest album" -> "could you Imagine Dragons' latest album",
    "play their latest album \U0001F3B8" -> "play Imagine latest album by Dragons") has lost the
    user's own content, whatever its confidence, and the utterance is kept instead. Besides the
    words in `droppable`, English stop words ("and in dallas?" -> "how's the weather in dallas
    tomorrow?") and ASCII punctuation may always go. Without `droppable` (models saved before it
    was recorded) only words in characters the network never learned from count: emoji,
    symbols, other alphabets.
    """
    kept = {w.lower() for w in words}
    dropped = []
    for word in source.words[source.utterance_start:]:
        lower = word.lower()
        if lower in kept or (word.isascii() and not any(ch.isalnum() for ch in word)):
            continue  # kept, or ASCII punctuation
        if (lower not in droppable and lower not in STOP_WORDS if droppable is not None
                else _unlearned(word, features)):
            dropped.append(word)
    return dropped


def _unlearned(word: str, features: FeatureSpace) -> bool:
    """Whether a word is written in characters the network never learned from (emoji, symbols,
    other alphabets): outside ASCII and not in its vocabulary."""
    return not word.isascii() and word.lower() not in features.words.stoi


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def describe(rewriter: Rewriter) -> Dict[str, int]:
    """Sizes worth printing: parameters and vocabularies."""
    return {"parameters": sum(p.numel() for p in rewriter.network.parameters()),
            "input_vocabulary": len(rewriter.features.words),
            "generation_vocabulary": len(rewriter.features.gen)}
