"""Greedy and beam decoding, limiting how often an n-gram may recur."""
import math
from typing import (Callable, Collection, Dict, Iterable, List, NamedTuple, Optional, Sequence,
                    Set, Tuple)

import numpy as np

from cqr_rasa.features import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Source
from cqr_rasa.model.inference import Engine, Prepared, State
from cqr_rasa.model.network import NEG


NEVER = [PAD_ID, UNK_ID, BOS_ID]  # ids a rewrite may not contain


class Hypothesis(NamedTuple):
    """A decoded rewrite: extended-vocabulary ids (no EOS) and attention rows per id; `logps`
    holds one log-probability per id plus one for EOS when the hypothesis finished."""

    ids: List[int]
    logps: List[float]
    attention: List[np.ndarray]  # one (src_len,) row per output id
    copied: List[bool]  # whether that id was copied (see `_copied`)

    @property
    def score(self) -> float:
        return sum(self.logps) / (len(self.logps) + 1)


def _copied(switch_copied: bool, token: int, gen_vocab: int) -> bool:
    """Whether an output id was copied: the copy distribution outweighed generation (the step's
    switch), or the id is outside the generation vocabulary and so can only have come from the
    dialogue."""
    return bool(switch_copied) or token >= gen_vocab


def doubled_ids(source: Source) -> Set[int]:
    """Ids the dialogue writes twice in a row within a turn ("Jing Jing"): the decoder may too."""
    ids, turns = source.ext_ids, source.turn_index
    return {a for a, b, t, u in zip(ids, ids[1:], turns, turns[1:]) if a == b and t == u}


def _blocked(ids: Sequence[int], n: int, limit: int,
             doubled: Collection[int] = ()) -> List[int]:
    """Ids that would make an n-gram of `ids` occur more than `limit` times, and the last id
    (never twice in a row, "by by", unless it is in `doubled`: "Jing Jing" may be written once
    each time the dialogue has it)."""
    repeat = ids[-1:]
    if repeat and repeat[0] in doubled and ids[-2:-1] != repeat:
        repeat = []
    if n <= 0 or len(ids) < n - 1:
        return list(repeat)
    start = len(ids) - n + 1  # where the last n - 1 ids, the prefix, begin
    prefix = ids[start:]
    follows = [ids[i + n - 1] for i in range(start) if ids[i:i + n - 1] == prefix]
    return list(repeat) + [t for t in set(follows) if follows.count(t) >= limit]


def breaks_rules(ids: Sequence[int], n: int, limit: int,
                 doubled: Collection[int] = ()) -> bool:
    """Whether some id of `ids` is one `_blocked` bars after the ids before it (in one pass:
    counting the n-grams as they complete)."""
    counts: Dict[Tuple[int, ...], int] = {}
    for k, token in enumerate(ids):
        if k and token == ids[k - 1] and (token not in doubled or ids[k - 2:k - 1] == [token]):
            return True
        if n > 0 and k >= n - 1:
            gram = tuple(ids[k - n + 1:k + 1])
            if counts.get(gram, 0) >= limit:
                return True
            counts[gram] = counts.get(gram, 0) + 1
    return False


def _ban(row: np.ndarray, ids: Iterable[int]) -> None:
    """Makes `ids` impossible in one row of log-probabilities (a few scalar writes cost less than
    one fancy-indexed write)."""
    for i in ids:
        row[i] = NEG


def greedy(engine: Engine, prepared: Prepared, state: State, max_len: int,
           no_repeat_ngram: int, max_ngram_count: int,
           doubled: Sequence[Collection[int]]) -> List[Hypothesis]:
    """Decodes a whole encoded batch greedily; `doubled` holds, per row, the ids its dialogue
    writes twice in a row."""
    size = len(state.h)
    prev, rows = np.full(size, BOS_ID), np.arange(size)
    hyps = [Hypothesis([], [], [], []) for _ in range(size)]
    done = [False] * size
    for _ in range(max_len):
        out = engine.step(prepared, state, prev)
        logp = out.logp
        for b in range(size):
            if not done[b]:
                _ban(logp[b], NEVER + _blocked(hyps[b].ids, no_repeat_ngram, max_ngram_count,
                                               doubled[b]))
        best = logp.argmax(1)
        chosen, switch_copied = logp[rows, best].tolist(), out.copied.tolist()
        for b, token in enumerate(best.tolist()):
            if done[b]:
                continue
            hyps[b].logps.append(chosen[b])
            if token == EOS_ID:
                done[b] = True
                continue
            hyps[b].ids.append(token)
            hyps[b].attention.append(out.state.attn[b])
            hyps[b].copied.append(_copied(switch_copied[b], token, engine.gen_vocab))
        if all(done):
            break
        state, prev = out.state, best
    return hyps


def beam_search(engine: Engine, prepared: Prepared, state: State, beam_size: int,
                max_len: int, no_repeat_ngram: int, max_ngram_count: int,
                eos_penalty: float, doubled: Collection[int],
                accept: Optional[Callable[[Hypothesis], bool]] = None,
                floor: float = -math.inf) -> Optional[Hypothesis]:
    """Beam search over one encoded dialogue; returns the best finished hypothesis.

    Only finished hypotheses whose `score` reaches `floor` and that `accept` accepts (if given)
    count; hypotheses that could not reach `floor` within `max_len` words are dropped. With
    `accept`, None is returned when none finished.

    `eos_penalty` is taken from EOS's log-probability when hypotheses are ranked, so that longer
    rewrites can win; the returned `logps` keep the network's own values.
    """
    beams = [Hypothesis([], [], [], [])]
    finished: List[Hypothesis] = []

    def final(hyp: Hypothesis) -> float:
        return hyp.score - eos_penalty / (len(hyp.logps) + 1)

    for _ in range(max_len):
        prev = np.array([h.ids[-1] if h.ids else BOS_ID for h in beams])
        out = engine.step(prepared, state, prev)
        logp = out.logp
        for b, hyp in enumerate(beams):
            _ban(logp[b], NEVER + _blocked(hyp.ids, no_repeat_ngram, max_ngram_count, doubled))
        eos = logp[:, EOS_ID].copy()
        logp[:, EOS_ID] -= eos_penalty
        totals = (logp + np.array([[sum(h.logps)] for h in beams])).ravel()
        width = logp.shape[1]
        candidates, rows = [], []
        for flat in np.argsort(-totals, kind="stable")[:2 * beam_size].tolist():
            b, token = divmod(flat, width)
            hyp, value = beams[b], float(logp[b, token])
            if token == EOS_ID:
                hyp = hyp._replace(logps=hyp.logps + [float(eos[b])])
                if hyp.score >= floor and (accept is None or accept(hyp)):
                    finished.append(hyp)
                continue
            # the best score it could still reach: every later word, and EOS, certain
            if (sum(hyp.logps) + value) / (max_len + 2) < floor:
                continue
            candidates.append(Hypothesis(hyp.ids + [token], hyp.logps + [value],
                                         hyp.attention + [out.state.attn[b]],
                                         hyp.copied + [_copied(out.copied[b], token,
                                                               engine.gen_vocab)]))
            rows.append(b)
            if len(candidates) == beam_size:
                break
        if not candidates or (len(finished) >= beam_size and max(map(final, finished))
                              >= max(h.score for h in candidates)):
            break
        beams = candidates
        state = out.state.take(np.array(rows))
    if accept is not None:
        return max(finished, key=final) if finished else None
    # unfinished beams all have one length, so `final` ranks them as `score` does
    return max(finished or beams, key=final)
