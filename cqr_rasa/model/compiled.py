"""Greedy rewriting of one dialogue as a single compiled program (TensorFlow's XLA).

Decoding word by word in numpy pays Python's and numpy's overhead on each of a step's thirty-odd
small operations (about 110 us a step at batch 1 on the development machine, most of it not
arithmetic), and the encoder's BiLSTM costs PyTorch about 0.3 ms a call to set up. Here one XLA
program computes, from `Engine`'s folded weights, what `Engine.encode`, `Engine.prepare` and
`Engine.step` compute for one dialogue: its encoding, P(rewrite needed) and, when that reaches the
threshold, every decoder step until EOS. A rewrite is one call.

XLA compiles a program per input shape, so a dialogue is padded to a multiple of `BUCKET` words;
each length's program (about 1 s to compile here, 13 MB) is compiled by `warm_up` or on its
first use. No value may decide a shape inside the program (an index written `logp[prev]` would:
XLA would then compile anew for every dialogue), hence `tf.gather` throughout.

Left out of the program, and how its result stays `decoding.greedy`'s:
- the n-gram limit and the doubled-word rule (`decoding._blocked`), which depend on the words
  written so far: `rewrite` checks the written ids against them afterwards and returns no
  hypothesis when a step chose an id they bar (the caller then decodes with `decoding.greedy`,
  which applies them as it goes; up to that step both write the same ids);
- batches and beams, which stay with `Engine` and `decoding`.
"""
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence

import numpy as np
import tensorflow as tf
from tensorflow.python.eager import context

from cqr_rasa.features import BOS_ID, EOS_ID, PAD_ID, Source, pad_sources
from cqr_rasa.model.decoding import NEVER, Hypothesis, _copied, breaks_rules, doubled_ids
from cqr_rasa.model.inference import _TINY, Engine, Prepared, State
from cqr_rasa.model.network import NEG

BUCKET = 32  # dialogues are padded to a multiple of this many words


class Compiled(NamedTuple):
    """What the program found for one dialogue."""

    p_rewrite: float
    # what numpy decoding reads (as `Engine.prepare` makes it), when `p_rewrite` reached the
    # threshold; else None (most turns: nothing more to do)
    prepared: Optional[Prepared]
    state: Optional[State]
    # the greedy rewrite when `p_rewrite` reached the threshold and it kept to the rules, else None
    hypothesis: Optional[Hypothesis]


class CompiledGreedy:
    """Encoding and greedy decoding of one dialogue with an `Engine`'s weights, compiled by XLA."""

    def __init__(self, engine: Engine, max_len: int) -> None:
        self.engine, self.max_len = engine, max_len
        h, gen_vocab = engine.hidden, engine.gen_vocab
        w = {name: tf.constant(getattr(engine, name)) for name in (
            "w_encoder_hh", "w_head", "b_head", "w_head_out", "w_bridge", "b_bridge", "w_states",
            "b_query", "gate_table", "w_recurrent", "w_query", "w_coverage", "v", "w_features",
            "b_features", "switch_table", "w_vocab", "b_vocab")}
        input_tables = [[tf.constant(t) for t in tables] for tables in engine.input_tables]
        b_head_out = engine.b_head_out
        last_row = len(engine.gate_table) - 1  # where copied words outside the vocabulary read

        def vecmat(vector, matrix):
            return tf.linalg.matvec(matrix, vector, transpose_a=True)

        def lstm(gates, cell):
            squashed = tf.tanh(gates)
            sig = squashed[..., :3 * h] * 0.5 + 0.5
            cell = sig[..., h:2 * h] * cell + sig[..., :h] * squashed[..., 3 * h:]
            return sig[..., 2 * h:] * tf.tanh(cell), cell

        def encode(features, n, start):
            """The BiLSTM's states over the first `n` positions of `features` (zero after)."""
            length = features.shape[0]
            positions = tf.range(length)
            valid = positions < n
            # the backward LSTM reads the dialogue reversed in place (padding stays at the end)
            reverse = tf.where(valid, n - 1 - positions, positions)
            inputs = tf.stack([tf.add_n([tf.gather(table, ids[:, k])
                                         for k, table in enumerate(tables)])
                               for tables, ids in zip(input_tables, (
                                   features, tf.gather(features, reverse)))], 1)  # (len, 2, 4h)
            forward = tf.TensorArray(tf.float32, size=length, element_shape=[h])
            backward = tf.TensorArray(tf.float32, size=length, element_shape=[h])
            hidden, cell = tf.zeros([2, h]), tf.zeros([2, h])
            # not `for t in tf.range(n)`: its Range op, though unused, makes XLA take `n` for a
            # compile-time constant and compile the program anew for every dialogue length
            t = tf.constant(0)
            while t < n:
                hidden, cell = lstm(tf.gather(inputs, t) + tf.einsum(
                    "dh,dhg->dg", hidden, w["w_encoder_hh"]), cell)
                forward = forward.write(t, hidden[0])
                backward = backward.write(n - 1 - t, hidden[1])
                t += 1
            states = tf.concat([forward.stack(), backward.stack()], 1)
            states *= tf.cast(valid, tf.float32)[:, None]
            pooled = tf.concat([
                tf.reduce_max(tf.where(mask[:, None], states, -1e4), 0)
                for mask in (valid & (positions >= start), valid)], 0)
            logit = tf.reduce_sum(tf.tanh(vecmat(pooled, w["w_head"]) + w["b_head"])
                                  * w["w_head_out"]) + b_head_out
            return states, valid, pooled, tf.sigmoid(logit)

        def rewrite(features, n, start, ext_ids, threshold, steps):
            states, valid, pooled, p_rewrite = encode(features, n, start)
            init = tf.tanh(vecmat(pooled, w["w_bridge"]) + w["b_bridge"])
            hidden, cell = init[:h], init[h:]
            projected = tf.linalg.matmul(states, w["w_states"]) + w["b_query"]
            padding = tf.where(valid, 0.0, -np.inf)
            length = states.shape[0]
            width = gen_vocab + length  # room for every copied word outside the vocabulary
            never = tf.scatter_nd([[i] for i in NEVER], [True] * len(NEVER), [width])
            ids = tf.TensorArray(tf.int32, size=max_len)
            logps = tf.TensorArray(tf.float32, size=max_len)
            attns = tf.TensorArray(tf.float32, size=max_len)
            copied = tf.TensorArray(tf.bool, size=max_len)
            context, attn, coverage = tf.zeros([2 * h]), tf.zeros([length]), tf.zeros([length])
            prev, written = tf.constant(BOS_ID), tf.constant(0)
            going = p_rewrite >= threshold  # (a `for` over a range this decides fails in XLA)
            while going and written < steps:
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
                ids, logps = ids.write(written, prev), logps.write(written, tf.gather(logp, prev))
                attns, copied = attns.write(written, attn), copied.write(written, switch < 0)
                coverage += attn
                written += 1
                going = prev != EOS_ID
            return (p_rewrite, states, projected, init, written, ids.stack(), logps.stack(),
                    attns.stack(), copied.stack())

        self._function = tf.function(rewrite, jit_compile=True)
        # one call per padded length (see `_direct`)
        self._programs: Dict[int, Callable[[List[tf.Tensor]], Sequence[tf.Tensor]]] = {}

    def warm_up(self, longest: int) -> None:
        """Compiles the programs for dialogues of up to `longest` words now, not on first
        use."""
        columns = len(self.engine.embeddings)
        for length in range(BUCKET, longest + BUCKET, BUCKET):
            self._call(np.zeros((length, columns), np.int32), 1, 0,
                       np.zeros(length, np.int32), 1.0, 0)

    def rewrite(self, source: Source, uncopyable: Sequence[int], threshold: float,
                no_repeat_ngram: int, max_ngram_count: int) -> Compiled:
        """P(rewrite needed) of one dialogue and, when P reaches `threshold`, what numpy decoding
        of it reads and `decoding.greedy`'s hypothesis if it kept to the rules (see the module's
        docstring). The `uncopyable` positions may not be copied."""
        found = self._run(source, uncopyable, threshold, self.max_len)
        if found.hypothesis is not None and breaks_rules(
                found.hypothesis.ids, no_repeat_ngram, max_ngram_count, doubled_ids(source)):
            return found._replace(hypothesis=None)
        return found

    def _run(self, source: Source, uncopyable: Sequence[int], threshold: float,
             steps: int) -> Compiled:
        """The program's result, before the rules: decoding stops at EOS or after `steps`."""
        padded = pad_sources([source])
        length, h = padded.features.shape[1], self.engine.hidden
        size = length + -length % BUCKET
        ext_ids = padded.ext_ids.copy()
        ext_ids[0, list(uncopyable)] = PAD_ID  # PAD's id, which decoding never writes
        p_rewrite, states, projected, init, n, ids, logps, attns, copied = self._call(
            _pad(padded.features[0].astype(np.int32), size), length, source.utterance_start,
            _pad(ext_ids[0].astype(np.int32), size), threshold, steps)
        hyp, n = None, int(n)
        if n:
            ids = ids.numpy()[:n].tolist()
            written = n - (ids[-1] == EOS_ID)  # EOS has a log-probability, not an id
            hyp = Hypothesis(ids[:written], logps.numpy()[:n].tolist(),
                             list(attns.numpy()[:written, :length]),
                             [_copied(c, t, self.engine.gen_vocab)
                              for c, t in zip(copied.numpy()[:written].tolist(), ids)])
        p_rewrite = float(p_rewrite)
        if p_rewrite < threshold:
            return Compiled(p_rewrite, None, None, hyp)
        init, zeros = init.numpy()[None], np.zeros((1, length), np.float32)
        return Compiled(p_rewrite,
                        Prepared(states.numpy()[None, :length], projected.numpy()[None, :length],
                                 ext_ids, None, self.engine.gen_vocab + padded.max_oov),
                        State(init[:, :h], init[:, h:], np.zeros((1, 2 * h), np.float32), zeros,
                              zeros), hyp)

    def _call(self, features: np.ndarray, n: int, start: int, ext_ids: np.ndarray,
              threshold: float, steps: int) -> Sequence[tf.Tensor]:
        # Python numbers convert to int32 and float32 tensors 5 times faster than numpy's
        args = [tf.constant(a) for a in (features, int(n), int(start), ext_ids, float(threshold),
                                         int(steps))]
        call = self._programs.get(len(features))
        if call is None:
            program = self._function.get_concrete_function(*args)
            self._programs[len(features)] = _direct(program)
            return program(*args)
        return call(args)


def _direct(program: Any) -> Callable[[List[tf.Tensor]], Sequence[tf.Tensor]]:
    """A call of a traced program that skips the checks of its arguments against its signature
    (0.2-0.25 ms of a 1.1-1.4 ms rewrite of a short dialogue here): the program's own function,
    fed the arguments and the tensors it captured, as `ConcreteFunction` calls it in
    TensorFlow 2.12, which Rasa 3.6 pins. Other versions get the ordinary call."""
    function = getattr(program, "_inference_function", None)
    if not hasattr(function, "call"):
        return lambda args: program(*args)
    captured, ctx = list(program.captured_inputs), context.context()
    return lambda args: function.call(ctx, args + captured)


def _pad(array: np.ndarray, length: int) -> np.ndarray:
    """`array` followed by zeros (PAD_ID) up to `length` rows (numpy's `pad` takes longer)."""
    out = np.zeros((length,) + array.shape[1:], array.dtype)
    out[:len(array)] = array
    return out
