"""The trained network at run time, in numpy: encoder, decoder step and the switch's mixture.

A rewrite is encoded and then decoded one word at a time at batch 1, where PyTorch spends most of
its time dispatching small operations (on the development machine a one-row linear layer took
30 us, against 1-6 us for a numpy operation). This module computes what `PointerGenerator.encode`,
`step` and `extended_logp` compute, with the weights folded once when the rewriter loads. Only the
encoder's BiLSTM over a long batch is left to PyTorch, one call over the whole sequence; a single
dialogue decoded greedily is rewritten by an XLA program computing the same (`compiled.py`).

- The encoder's input projection is a sum of rows looked up per feature column (each embedding
  table times its slice of the input weights, one table per direction).
- Both LSTMs' gates are reordered to input, forget, output, cell, and the three sigmoid
  gates' rows halved, so that one tanh serves all four gates: sigmoid(x) = (tanh(x / 2) + 1) / 2.
- The decoder's target embedding times its input weights, plus both biases, becomes one gate row
  per generation word (and the switch's embedding term one number per word).
- The output's hidden layer and the switch read the same features: one product serves both.

The outputs match the PyTorch network to float32 rounding; tests hold the two together. PyTorch
remains what trains the network.
"""
from typing import List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch

from cqr_rasa.features import UNK_ID, Source, pad_sources
from cqr_rasa.model.network import PointerGenerator, torch_threads

_TINY = np.finfo(np.float32).tiny


class Encoding(NamedTuple):
    """A batch of encoded dialogues: what the rewrite decision and, if needed, decoding read."""

    states: np.ndarray  # (batch, src_len, 2*hidden), zero on padding
    valid: np.ndarray  # (batch, src_len) bool
    ext_ids: np.ndarray  # (batch, src_len) int64
    max_oov: int
    pooled: np.ndarray  # (batch, 4*hidden): max over the utterance, max over the dialogue


class Prepared(NamedTuple):
    """A batch of encoded dialogues, what every decoder step reads."""

    states: np.ndarray  # (batch, src_len, 2*hidden)
    projected: np.ndarray  # (batch, src_len, attention), the query's bias added
    # (batch, src_len) int64; PAD_ID, which decoding never writes, where a word may not be
    # copied (padding, and what `Rewriter.rewrite`'s `copy_types` excludes)
    ext_ids: np.ndarray
    padding: Optional[np.ndarray]  # (batch, src_len): -inf on padding, 0 elsewhere; None if none
    width: int  # size of the extended vocabulary: gen_vocab + the batch's max_oov

    def take(self, rows: np.ndarray) -> "Prepared":
        return Prepared(*(a[rows] if isinstance(a, np.ndarray) else a for a in self))


class State(NamedTuple):
    h: np.ndarray  # (batch, hidden)
    c: np.ndarray  # (batch, hidden)
    context: np.ndarray  # (batch, 2*hidden)
    attn: np.ndarray  # (batch, src_len): the last step's attention
    coverage: np.ndarray  # (batch, src_len)

    def take(self, rows: np.ndarray) -> "State":
        return State(*(a[rows] for a in self))


class Output(NamedTuple):
    logp: np.ndarray  # (batch, gen_vocab + max_oov): log P(next id)
    copied: np.ndarray  # (batch,) bool: copying outweighed generating
    state: State


class Engine:
    """A trained `PointerGenerator` for inference, in numpy."""

    # Dialogues (of a batch, the longest) from this many words on are encoded by PyTorch's LSTM,
    # shorter ones by a numpy loop. PyTorch runs the sequence in compiled code, about 6.5 us a
    # word against 16, but costs about 0.2 ms a call to set up, and more in a Rasa process right
    # after TensorFlow ran there. Encoding there, numpy against PyTorch: 15 words 0.46 against
    # 1.1 ms, 54 words 1.57 and 1.54 ms, 67 words 1.89 and 1.66 ms, 105 words 2.77 and 1.94 ms.
    pytorch_from = 64

    def __init__(self, network: PointerGenerator) -> None:
        def array(tensor: torch.Tensor) -> np.ndarray:
            return np.ascontiguousarray(tensor.detach().cpu().numpy(), dtype=np.float32)

        config = network.config
        d, h = config.word_dim, config.hidden
        self.network, self.gen_vocab, self.hidden = network, config.gen_vocab, h
        # PyTorch's gate order is input, forget, cell, output (rows of its weights)
        order = np.r_[0:2 * h, 3 * h:4 * h, 2 * h:3 * h]
        half = np.full(4 * h, 0.5, dtype=np.float32)
        half[3 * h:] = 1.0

        def as_gates(weights: torch.Tensor) -> np.ndarray:
            """(4h, ...) weights in PyTorch's order -> (..., 4h) in ours, sigmoid rows halved."""
            return np.ascontiguousarray(array(weights)[order].T * half)

        # encoder: its input is the concatenated embeddings of the seven feature columns, so in
        # numpy its projection is a sum of per-column tables, each (rows, 4h), one list per
        # direction
        lstm, directions = network.encoder, ("", "_reverse")
        self.embeddings = [array(network.word_embedding.weight)] + [
            array(e.weight) for e in network.feature_embeddings]
        offsets = np.cumsum([0] + [e.shape[1] for e in self.embeddings])
        self.input_tables = []
        for s in directions:
            w_input = as_gates(getattr(lstm, f"weight_ih_l0{s}"))  # (input, 4h)
            tables = [e @ w_input[start:end]
                      for e, start, end in zip(self.embeddings, offsets, offsets[1:])]
            # both biases, added with the word's row
            tables[0] += as_gates(getattr(lstm, f"bias_ih_l0{s}") + getattr(lstm, f"bias_hh_l0{s}"))
            self.input_tables.append(tables)
        self.w_encoder_hh = np.stack([as_gates(getattr(lstm, f"weight_hh_l0{s}"))
                                      for s in directions])  # (2, h, 4h)
        self.w_bridge, self.b_bridge = (array(network.bridge.weight).T,
                                        array(network.bridge.bias))
        first, _, second = network.rewrite_head
        self.w_head, self.b_head = array(first.weight).T, array(first.bias)
        self.w_head_out, self.b_head_out = array(second.weight)[0], float(second.bias.detach())
        # decoder
        embedding = array(network.target_embedding.weight)  # (gen_vocab, d)
        w_ih = as_gates(network.decoder.weight_ih)  # (d + 2h + 2h, 4h): [emb, context, selective]
        gate_table = (embedding @ w_ih[:d] + as_gates(
            network.decoder.bias_ih + network.decoder.bias_hh))  # (gen_vocab, 4h)
        # rows for [h, context, selective read]: (5h, 4h)
        self.w_recurrent = np.concatenate([as_gates(network.decoder.weight_hh), w_ih[d:]])
        self.w_states = array(network.attn_states.weight).T.copy()  # (2h, a)
        self.w_query = array(network.attn_query.weight).T.copy()  # (h, a)
        self.b_query = array(network.attn_query.bias)
        self.w_coverage = array(network.attn_coverage)  # (a,)
        self.v = array(network.attn_v.weight)[0]  # (a,)
        hidden_layer, _, vocab_layer = network.out
        switch = array(network.switch.weight)[0]  # over [h, context, embedding]
        # [h, context] feed the output's hidden layer and the switch: one product, (3h, h + 1)
        self.w_features = np.concatenate([array(hidden_layer.weight).T, switch[:3 * h, None]], 1)
        self.b_features = np.append(array(hidden_layer.bias), np.float32(0.0))
        self.w_vocab = array(vocab_layer.weight).T.copy()  # (h, gen_vocab)
        self.b_vocab = array(vocab_layer.bias)
        switch_table = embedding @ switch[3 * h:] + float(network.switch.bias.detach())
        # a last row for copied words outside the generation vocabulary, which the decoder reads
        # as UNK: looked up with mode="clip", every such id lands there
        self.gate_table = np.concatenate([gate_table, gate_table[UNK_ID:UNK_ID + 1]])
        self.switch_table = np.append(switch_table, switch_table[UNK_ID])
        # tanh bounds the attention scores by sum |v| and the output logits by a column's
        # sum |w| + |b|: while those stay below 80, exp neither overflows nor underflows to zero
        # in float32, and the softmaxes need no shift by their maximum
        self.shift_scores = bool(np.abs(self.v).sum() >= 80)
        self.shift_logits = bool((np.abs(self.w_vocab).sum(0) + np.abs(self.b_vocab)).max() >= 80)

    def encode(self, sources: Sequence[Source]) -> Tuple[Encoding, List[float]]:
        """Encodes dialogues; returns the encoding and P(rewrite needed) for each."""
        padded = pad_sources(sources)
        valid = padded.valid
        lstm = self._pytorch_states if valid.shape[1] >= self.pytorch_from else self._numpy_states
        states = lstm(padded.features, valid)
        pooled = np.concatenate([_masked_max(states, padded.utterance),
                                 _masked_max(states, valid)], axis=1)
        logit = np.tanh(pooled @ self.w_head + self.b_head) @ self.w_head_out + self.b_head_out
        return (Encoding(states, valid, padded.ext_ids, padded.max_oov, pooled),
                (1.0 / (1.0 + np.exp(-logit))).tolist())

    def _pytorch_states(self, features: np.ndarray, valid: np.ndarray) -> np.ndarray:
        inputs = np.concatenate([table[features[..., k]]
                                 for k, table in enumerate(self.embeddings)], axis=-1)
        # one thread: two would keep spinning after the call and take the cores from the decoder
        with torch_threads(1), torch.inference_mode():
            return self.network.run_encoder(
                torch.from_numpy(inputs),
                None if valid.all() else torch.from_numpy(valid.sum(1))).numpy()

    def _numpy_states(self, features: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """The BiLSTM, both directions advancing together, the backward one reading each
        dialogue's feature ids reversed."""
        h = self.hidden
        size, length = valid.shape
        lengths = np.maximum(valid.sum(1), 1)[:, None]
        positions = np.arange(length)
        # each dialogue reversed in place (padding stays at the end): the backward LSTM's input
        reverse = np.where(positions < lengths, lengths - 1 - positions, positions).T
        rows = np.arange(size)
        ids = features.transpose(1, 0, 2)  # time first: (src_len, batch, columns)
        # shape: (src_len, batch, 2, 1, 4h): input projections, forward and backward
        projected = np.empty((length, size, 2, 1, 4 * h), dtype=np.float32)
        for direction, read in enumerate((ids, ids[reverse, rows])):
            projected[:, :, direction, 0] = sum(
                table[read[..., k]] for k, table in enumerate(self.input_tables[direction]))
        cell = np.zeros((size, 2, 1, h), dtype=np.float32)
        outputs = np.zeros((length + 1, size, 2, 1, h), dtype=np.float32)  # [t + 1]: step t's
        gates = np.empty((size, 2, 1, 4 * h), dtype=np.float32)
        for t in range(length):
            np.matmul(outputs[t], self.w_encoder_hh, out=gates)
            gates += projected[t]
            outputs[t + 1], cell = _lstm(gates, cell, h)
        outputs = outputs[1:, :, :, 0]
        return np.concatenate([outputs[:, :, 0], outputs[reverse, rows, 1]],
                              axis=-1).transpose(1, 0, 2) * valid[..., None]

    def prepare(self, encoding: Encoding) -> Tuple[Prepared, State]:
        """What decoding reads and the decoder's first state; only for dialogues being decoded
        (most turns need no rewrite and stop at the encoding)."""
        states, valid, h = encoding.states, encoding.valid, self.hidden
        padding = None if valid.all() else np.where(valid, np.float32(0.0), np.float32(-np.inf))
        init = np.tanh(encoding.pooled @ self.w_bridge + self.b_bridge)
        zeros = np.zeros(valid.shape, dtype=np.float32)
        context = np.zeros((len(states), 2 * h), dtype=np.float32)
        return (Prepared(states, states @ self.w_states + self.b_query, encoding.ext_ids, padding,
                         self.gen_vocab + encoding.max_oov),
                State(init[:, :h], init[:, h:], context, zeros, zeros))

    def step(self, prepared: Prepared, state: State, prev: np.ndarray) -> Output:
        """One step for every row of `state` (rows of a batch, or beams of one dialogue)."""
        p, hidden = prepared, self.hidden
        # the LSTM reads the previous word, context and selective read (CopyNet's: the states
        # of the source positions holding the previous word, weighted by their attention, which
        # is zero on padding)
        hits = state.attn * (p.ext_ids == prev[:, None])
        selective = np.matmul(hits[:, None, :], p.states)[:, 0]
        recurrent = np.concatenate([state.h, state.context, selective], axis=1)
        gates = self.gate_table.take(prev, axis=0, mode="clip")
        gates += _product(recurrent, self.w_recurrent)
        h, c = _lstm(gates, state.c, hidden)
        energy = p.projected + _product(h, self.w_query)[:, None, :]
        energy += state.coverage[:, :, None] * self.w_coverage
        scores = np.tanh(energy, out=energy) @ self.v
        if p.padding is not None:
            scores += p.padding
        attn = _softmax(scores, self.shift_scores)
        context = np.matmul(attn[:, None, :], p.states)[:, 0]
        # shape: (batch, hidden + 1): the output's hidden layer and the switch's logit
        joint = _product(np.concatenate([h, context], axis=1), self.w_features)
        joint += self.b_features
        switch = joint[:, hidden] + self.switch_table.take(prev, mode="clip")
        logits = _product(np.tanh(joint[:, :hidden]), self.w_vocab)
        logits += self.b_vocab
        vocab = _softmax(logits, self.shift_logits)
        p_gen = 1.0 / (1.0 + np.exp(-switch))
        # mixed in probability space: the copy mass summed per extended id (one count over the
        # whole batch, each row's ids offset by the row), plus the generation mass on the
        # vocabulary's ids
        rows = len(prev)
        ids = p.ext_ids + np.arange(0, rows * p.width, p.width)[:, None]
        mixed = np.bincount(ids.ravel(), (attn * (1.0 - p_gen)[:, None]).ravel(),
                            rows * p.width).reshape(rows, p.width)
        mixed[:, :self.gen_vocab] += p_gen[:, None] * vocab
        # an impossible id gets log(tiny) = -87, still above the NEG that decoding bans ids with
        return Output(np.log(np.maximum(mixed, _TINY, out=mixed), out=mixed), switch < 0,
                      State(h, c, context, attn, state.coverage + attn))


def _product(rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """`rows @ weights` for the few rows of a decoder step (a batch or a beam). OpenBLAS's
    matrix product repacks all of `weights` on every call: for 4 rows of the decoder's gate
    weights it took 190 us here, against 16 us for 1 row and 54 us for 4 row-by-row products.
    A single row, or 16 and more, go to the matrix product."""
    if len(rows) == 1 or len(rows) >= 16:
        return rows @ weights
    return np.matmul(rows[:, None, :], weights)[:, 0]


def _softmax(x: np.ndarray, shift: bool) -> np.ndarray:
    """Softmax over the last axis; `shift` subtracts the maximum first (unbounded inputs)."""
    e = np.exp(x - x.max(axis=1, keepdims=True) if shift else x)
    e /= e.sum(axis=1, keepdims=True)
    return e


def _lstm(gates: np.ndarray, cell: np.ndarray, hidden: int) -> Tuple[np.ndarray, np.ndarray]:
    """An LSTM cell's update from its gates (input, forget, output, cell; the sigmoid rows halved
    at load). Overwrites `gates`."""
    squashed = np.tanh(gates, out=gates)
    sig = squashed[..., :3 * hidden]
    sig *= 0.5
    sig += 0.5
    cell = sig[..., hidden:2 * hidden] * cell
    cell += sig[..., :hidden] * squashed[..., 3 * hidden:]
    return sig[..., 2 * hidden:] * np.tanh(cell), cell


def _masked_max(states: np.ndarray, mask: np.ndarray) -> np.ndarray:
    # shape: (batch, 2 * hidden); as the network does, -1e4 where the mask is empty
    return np.where(mask[..., None], states, np.float32(-1e4)).max(axis=1)
