"""Greedy and beam decoding with repeated-n-gram blocking."""
from typing import List, NamedTuple, Sequence

import torch

from cqr_rasa.features import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Batch
from cqr_rasa.model.network import NEG, Encoded, PointerGenerator, extended_logp


NEVER = [PAD_ID, UNK_ID, BOS_ID]  # ids a rewrite may not contain


class Hypothesis(NamedTuple):
    """A decoded rewrite: extended-vocabulary ids (no EOS) and attention rows per id; `logps`
    holds one log-probability per id plus one for EOS when the hypothesis finished."""

    ids: List[int]
    logps: List[float]
    attention: List[torch.Tensor]  # one (src_len,) row per output id
    copied: List[bool]  # whether copying outweighed generation for that id

    @property
    def score(self) -> float:
        return sum(self.logps) / (len(self.logps) + 1)


def _blocked(ids: Sequence[int], n: int) -> List[int]:
    """Ids that would repeat an n-gram already in `ids`, or the last id right away ("by by")."""
    repeat = ids[-1:]
    if n <= 0 or len(ids) < n - 1:
        return list(repeat)
    prefix = tuple(ids[len(ids) - n + 1:]) if n > 1 else ()
    return list(repeat) + [ids[i + n - 1] for i in range(len(ids) - n + 1)
                           if tuple(ids[i:i + n - 1]) == prefix]


@torch.no_grad()
def greedy(model: PointerGenerator, batch: Batch, encoded: Encoded, max_len: int,
           no_repeat_ngram: int = 3) -> List[Hypothesis]:
    """Decodes a whole batch greedily."""
    gen_vocab = model.config.gen_vocab
    projected = model.attn_states(encoded.states)
    state = model.initial_state(encoded)
    size = batch.ext_ids.size(0)
    prev = torch.full((size,), BOS_ID, dtype=torch.long)
    hyps = [Hypothesis([], [], [], []) for _ in range(size)]
    done = [False] * size
    for _ in range(max_len):
        step = model.step(encoded, projected, state, prev)
        logp = extended_logp(step, batch.ext_ids, gen_vocab, batch.max_oov)
        logp[:, NEVER] = NEG
        rows, banned = [], []
        for b in range(size):
            blocked = _blocked(hyps[b].ids, no_repeat_ngram)
            rows += [b] * len(blocked)
            banned += blocked
        if banned:
            logp[rows, banned] = NEG
        best = logp.argmax(-1)
        # one conversion per step instead of one per dialogue and value
        chosen = logp.gather(1, best.unsqueeze(1)).squeeze(1).tolist()
        copied = (step.log_p_copy > step.log_p_gen).tolist()
        for b, token in enumerate(best.tolist()):
            if done[b]:
                continue
            hyps[b].logps.append(chosen[b])
            if token == EOS_ID:
                done[b] = True
                continue
            hyps[b].ids.append(token)
            hyps[b].attention.append(step.attn[b])
            hyps[b].copied.append(copied[b])
        if all(done):
            break
        state, prev = step.state, best
    return hyps


@torch.no_grad()
def beam_search(model: PointerGenerator, batch: Batch, encoded: Encoded, beam_size: int,
                max_len: int, no_repeat_ngram: int = 3) -> Hypothesis:
    """Beam search for a batch of one dialogue; returns the best finished hypothesis."""
    gen_vocab = model.config.gen_vocab
    beams = [Hypothesis([], [], [], [])]
    state = model.initial_state(encoded)
    projected_one = model.attn_states(encoded.states)
    finished: List[Hypothesis] = []
    for _ in range(max_len):
        k = len(beams)
        expanded = encoded._replace(states=encoded.states.expand(k, -1, -1),
                                    mask=encoded.mask.expand(k, -1),
                                    ext_ids=encoded.ext_ids.expand(k, -1))
        projected = projected_one.expand(k, -1, -1)
        prev = torch.tensor([h.ids[-1] if h.ids else BOS_ID for h in beams])
        step = model.step(expanded, projected, state, prev)
        logp = extended_logp(step, batch.ext_ids.expand(k, -1), gen_vocab, batch.max_oov)
        logp[:, NEVER] = NEG
        for b, hyp in enumerate(beams):
            for banned in _blocked(hyp.ids, no_repeat_ngram):
                logp[b, banned] = NEG
        totals = logp + torch.tensor([sum(h.logps) for h in beams]).unsqueeze(1)
        top = totals.view(-1).topk(min(2 * beam_size, totals.numel()))
        candidates, rows = [], []
        for flat in top.indices.tolist():
            b, token = divmod(flat, logp.size(1))
            hyp = beams[b]
            if token == EOS_ID:
                finished.append(hyp._replace(logps=hyp.logps + [float(logp[b, token])]))
                continue
            candidates.append(Hypothesis(hyp.ids + [token], hyp.logps + [float(logp[b, token])],
                                         hyp.attention + [step.attn[b]],
                                         hyp.copied + [bool(step.log_p_copy[b] > step.log_p_gen[b])]))
            rows.append(b)
            if len(candidates) == beam_size:
                break
        if not candidates or (len(finished) >= beam_size and max(h.score for h in finished)
                              >= max(h.score for h in candidates)):
            break
        index = torch.tensor(rows)
        beams = candidates
        state = type(step.state)(*(tensor[index] for tensor in step.state))
    return max(finished or beams, key=lambda h: h.score)
