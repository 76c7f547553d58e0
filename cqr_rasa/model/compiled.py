"""Greedy decoding of one dialogue as a single compiled program (TensorFlow's XLA).

Decoding word by word in numpy pays Python's and numpy's overhead on each of a step's thirty-odd
small operations (about 110 us a step at batch 1 on the development machine, most of it not
arithmetic). Here the whole loop, every step until EOS, is one XLA program computing what
`Engine.step` computes from the same folded weights, so a rewrite's decoding is one call.

XLA compiles a program per input shape, so a dialogue is padded to a multiple of `BUCKET` words;
each length is compiled on its first use (0.35-0.8 s here) or ahead by `warm_up`. No value
may decide a shape inside the program (an index written `logp[prev]` would: XLA would then
compile anew for every dialogue), hence `tf.gather` throughout.

Left out of the program, and how its result stays `decoding.greedy`'s:
- the n-gram limit and the doubled-word rule (`decoding._blocked`), which depend on the words
  written so far: `decode` checks the written ids against them afterwards and returns None when
  a step chose an id they bar (the caller then decodes with `decoding.greedy`, which applies
  them as it goes; up to that step both write the same ids);
- batches and beams, which stay with `decoding`.
"""
from typing import Callable, Collection, Dict, Optional

import numpy as np
import tensorflow as tf

from cqr_rasa.features import BOS_ID, EOS_ID
from cqr_rasa.model.decoding import NEVER, Hypothesis, _copied, breaks_rules
from cqr_rasa.model.inference import _TINY, Engine, Prepared, State
from cqr_rasa.model.network import NEG

BUCKET = 32  # dialogues are padded to a multiple of this many words


class CompiledGreedy:
    """Greedy decoding of one encoded dialogue with an `Engine`'s weights, compiled by XLA."""

    def __init__(self, engine: Engine, max_len: int) -> None:
        self.engine, self.max_len = engine, max_len
        h, gen_vocab = engine.hidden, engine.gen_vocab
        w = {name: tf.constant(getattr(engine, name)) for name in (
            "gate_table", "w_recurrent", "w_query", "w_coverage", "v", "w_features",
            "b_features", "switch_table", "w_vocab", "b_vocab")}
        last_row = len(engine.gate_table) - 1  # where copied words outside the vocabulary read

        def vecmat(vector, matrix):
            return tf.linalg.matvec(matrix, vector, transpose_a=True)

        def lstm(gates, cell):
            squashed = tf.tanh(gates)
            sig = squashed[:3 * h] * 0.5 + 0.5
            cell = sig[h:2 * h] * cell + sig[:h] * squashed[3 * h:]
            return sig[2 * h:] * tf.tanh(cell), cell

        def decode(states, projected, ext_ids, padding, hidden, cell, steps):
            length = states.shape[0]
            width = gen_vocab + length  # room for every copied word outside the vocabulary
            never = tf.scatter_nd([[i] for i in NEVER], [True] * len(NEVER), [width])
            ids = tf.TensorArray(tf.int32, size=max_len)
            logps = tf.TensorArray(tf.float32, size=max_len)
            attns = tf.TensorArray(tf.float32, size=max_len)
            copied = tf.TensorArray(tf.bool, size=max_len)
            context, attn, coverage = tf.zeros([2 * h]), tf.zeros([length]), tf.zeros([length])
            prev, n = tf.constant(BOS_ID), tf.constant(0)
            for i in tf.range(steps):
                hits = attn * tf.cast(tf.equal(ext_ids, prev), tf.float32)  # selective read
                row = tf.minimum(prev, last_row)
                hidden, cell = lstm(tf.gather(w["gate_table"], row) + vecmat(
                    tf.concat([hidden, context, vecmat(hits, states)], 0), w["w_recurrent"]),
                    cell)
                energy = tf.tanh(projected + vecmat(hidden, w["w_query"])[None, :]
                                 + coverage[:, None] * w["w_coverage"][None, :])
                attn = tf.nn.softmax(tf.linalg.matvec(energy, w["v"]) + padding)
                context = vecmat(attn, states)
                joint = vecmat(tf.concat([hidden, context], 0), w["w_features"]) + w["b_features"]
                switch = joint[h] + tf.gather(w["switch_table"], row)
                vocab = tf.nn.softmax(vecmat(tf.tanh(joint[:h]), w["w_vocab"]) + w["b_vocab"])
                p_gen = tf.sigmoid(switch)
                mixed = (tf.math.unsorted_segment_sum(attn * (1.0 - p_gen), ext_ids, width)
                         + tf.pad(p_gen * vocab, [[0, width - gen_vocab]]))
                logp = tf.where(never, tf.constant(NEG, tf.float32),
                                tf.math.log(tf.maximum(mixed, _TINY)))
                prev = tf.cast(tf.argmax(logp), tf.int32)
                ids, logps = ids.write(i, prev), logps.write(i, tf.gather(logp, prev))
                attns, copied = attns.write(i, attn), copied.write(i, switch < 0)
                coverage += attn
                n = i + 1
                if prev == EOS_ID:
                    break
            return n, ids.stack(), logps.stack(), attns.stack(), copied.stack()

        self._function = tf.function(decode, jit_compile=True)
        # one per padded length: called directly, a traced program skips the function's
        # argument matching (about 0.2 ms a call)
        self._programs: Dict[int, Callable] = {}

    def warm_up(self, up_to: int) -> None:
        """Compiles the programs for dialogues of up to `up_to` words now, not on first use."""
        h = self.engine.hidden
        for length in range(BUCKET, up_to + BUCKET, BUCKET):
            zeros = np.zeros((1, length, 2 * h), np.float32)
            prepared = Prepared(zeros, zeros[..., :len(self.engine.v)],
                                np.zeros((1, length), np.int64), None, self.engine.gen_vocab)
            start = np.zeros((1, h), np.float32)
            self._run(prepared, State(start, start, None, None, None), 1)

    def decode(self, prepared: Prepared, state: State, no_repeat_ngram: int,
               max_ngram_count: int, doubled: Collection[int]) -> Optional[Hypothesis]:
        """`decoding.greedy`'s hypothesis for a batch of one, or None when it broke the
        rules (see the module's docstring)."""
        hyp = self._run(prepared, state, self.max_len)
        return None if breaks_rules(hyp.ids, no_repeat_ngram, max_ngram_count, doubled) else hyp

    def _run(self, prepared: Prepared, state: State, steps: int) -> Hypothesis:
        length = prepared.states.shape[1]
        padded = length + -length % BUCKET
        inputs = [_pad(a[0], padded) for a in (prepared.states, prepared.projected,
                                               prepared.ext_ids.astype(np.int32))]  # PAD_ID
        inputs.append(_pad(np.zeros(length, np.float32) if prepared.padding is None
                           else prepared.padding[0], padded, -np.inf))
        args = [tf.constant(a) for a in inputs + [state.h[0], state.c[0], np.int32(steps)]]
        program = self._programs.get(padded)
        if program is None:
            program = self._programs[padded] = self._function.get_concrete_function(*args)
        n, ids, logps, attns, copied = program(*args)
        n = int(n)
        ids = ids.numpy()[:n].tolist()
        written = n - (n > 0 and ids[-1] == EOS_ID)  # EOS has a log-probability, not an id
        return Hypothesis(ids[:written], logps.numpy()[:n].tolist(),
                          list(attns.numpy()[:written, :length]),
                          [_copied(c, t, self.engine.gen_vocab)
                           for c, t in zip(copied.numpy()[:written].tolist(), ids)])


def _pad(array: np.ndarray, length: int, fill: float = 0) -> np.ndarray:
    """`array` followed by `fill` up to `length` rows (numpy's `pad` takes longer)."""
    out = np.full((length,) + array.shape[1:], fill, array.dtype)
    out[:len(array)] = array
    return out
