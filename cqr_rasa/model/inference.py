"""The decoder's step in numpy, for rewriting at run time.

A rewrite is decoded one word at a time at batch 1, where PyTorch spends most of each step
dispatching some forty small operations. This module runs the same step, `PointerGenerator.step`
followed by `extended_logp`, with the weights folded once when the rewriter loads:

- the target embedding times the LSTM's input weights, plus both biases, becomes one gate row per
  generation word (and the switch's embedding term one number per word);
- the encoder states times the LSTM's context and selective-read weights are computed once per
  dialogue, so feeding the previous context is an attention-weighted sum of rows and the selective
  read (non-zero only where the source holds the previous word) a sum over a few rows.

Outputs match the PyTorch step to float32 rounding; a test holds the two together.
"""
from typing import NamedTuple

import numpy as np
import torch

from cqr_rasa.features import UNK_ID
from cqr_rasa.model.network import Encoded, PointerGenerator

_TINY = np.finfo(np.float32).tiny


class Prepared(NamedTuple):
    """One batch of encoded dialogues, as numpy arrays."""

    states: np.ndarray  # (batch, src_len, 2*hidden)
    projected: np.ndarray  # (batch, src_len, attention)
    valid: np.ndarray  # (batch, src_len) bool
    ext_ids: np.ndarray  # (batch, src_len) int64
    scatter: np.ndarray  # (batch, src_len, gen_vocab + max_oov): one-hot of each word's ext id


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


class StepEngine:
    """Decoder steps of a trained `PointerGenerator`, in numpy (inference only)."""

    def __init__(self, network: PointerGenerator) -> None:
        def array(tensor: torch.Tensor) -> np.ndarray:
            return np.ascontiguousarray(tensor.detach().cpu().numpy(), dtype=np.float32)

        config = network.config
        d, h = config.word_dim, config.hidden
        self.gen_vocab, self.hidden = config.gen_vocab, h
        embedding = array(network.target_embedding.weight)  # (gen_vocab, d)
        w_ih = array(network.decoder.weight_ih)  # (4h, d + 2h + 2h): [emb, context, selective]
        # PyTorch's gate order is input, forget, cell, output; halving the rows of the three
        # sigmoid gates lets one tanh serve all four
        half = np.full(4 * h, 0.5, dtype=np.float32)
        half[2 * h:3 * h] = 1.0
        self.gate_table = (embedding @ w_ih[:, :d].T + array(network.decoder.bias_ih)
                           + array(network.decoder.bias_hh)) * half  # (gen_vocab, 4h)
        # rows for [h, context, selective read]: (5h, 4h)
        self.w_recurrent = np.concatenate([array(network.decoder.weight_hh).T,
                                           w_ih[:, d:].T]) * half
        self.w_states = array(network.attn_states.weight).T.copy()  # (2h, a)
        self.w_query = array(network.attn_query.weight).T.copy()  # (h, a)
        self.b_query = array(network.attn_query.bias)
        self.w_coverage = array(network.attn_coverage)  # (a,)
        self.v = array(network.attn_v.weight)[0]  # (a,)
        hidden_layer, _, vocab_layer = network.out
        self.w_hidden = array(hidden_layer.weight).T.copy()  # (3h, h)
        self.b_hidden = array(hidden_layer.bias)
        self.w_vocab = array(vocab_layer.weight).T.copy()  # (h, gen_vocab)
        self.b_vocab = array(vocab_layer.bias)
        switch = array(network.switch.weight)[0]  # over [h, context, embedding]
        self.w_switch = switch[:3 * h]
        self.switch_table = embedding @ switch[3 * h:] + float(network.switch.bias.detach())

    def prepare(self, encoded: Encoded, max_oov: int) -> Prepared:
        states = encoded.states.detach().cpu().numpy().astype(np.float32, copy=False)
        ext_ids = encoded.ext_ids.cpu().numpy()
        scatter = np.zeros(ext_ids.shape + (self.gen_vocab + max_oov,), dtype=np.float32)
        np.put_along_axis(scatter, ext_ids[..., None], 1.0, axis=-1)
        return Prepared(states, states @ self.w_states, encoded.mask.cpu().numpy(), ext_ids,
                        scatter)

    def initial_state(self, encoded: Encoded) -> State:
        h0, c0 = (t.detach().cpu().numpy().astype(np.float32) for t in encoded.init)
        zeros = np.zeros(encoded.mask.shape, dtype=np.float32)
        return State(h0, c0, np.zeros((len(h0), 2 * self.hidden), dtype=np.float32), zeros, zeros)

    def step(self, prepared: Prepared, state: State, prev: np.ndarray) -> Output:
        """One step for every row of `state` (rows of a batch, or beams of one dialogue)."""
        p, hidden = prepared, self.hidden
        gen_ids = np.where(prev >= self.gen_vocab, UNK_ID, prev)
        # the LSTM reads the previous word, context and selective read (CopyNet's: the states
        # of the source positions holding the previous word, weighted by their attention)
        hits = state.attn * ((p.ext_ids == prev[:, None]) & p.valid)
        selective = np.matmul(hits[:, None, :], p.states)[:, 0]
        recurrent = np.concatenate([state.h, state.context, selective], axis=1)
        gates = self.gate_table[gen_ids] + recurrent @ self.w_recurrent
        # input, forget and output rows were halved at load: sigmoid(x) = (tanh(x / 2) + 1) / 2
        squashed = np.tanh(gates)
        sig = 0.5 * squashed + 0.5
        c = sig[:, hidden:2 * hidden] * state.c + sig[:, :hidden] * squashed[:, 2 * hidden:3 * hidden]
        h = sig[:, 3 * hidden:] * np.tanh(c)
        energy = np.tanh(p.projected + (h @ self.w_query + self.b_query)[:, None, :]
                         + state.coverage[:, :, None] * self.w_coverage)
        scores = np.where(p.valid, energy @ self.v, -np.inf)
        attn = np.exp(scores - scores.max(axis=1, keepdims=True))
        attn /= attn.sum(axis=1, keepdims=True)
        context = np.matmul(attn[:, None, :], p.states)[:, 0]
        features = np.concatenate([h, context], axis=1)
        logits = np.tanh(features @ self.w_hidden + self.b_hidden) @ self.w_vocab + self.b_vocab
        vocab = np.exp(logits - logits.max(axis=1, keepdims=True))
        vocab /= vocab.sum(axis=1, keepdims=True)
        switch = features @ self.w_switch + self.switch_table[gen_ids]
        p_gen = 1.0 / (1.0 + np.exp(-switch))
        # mixed in probability space: the copy mass summed per extended id, plus the generation
        # mass on the vocabulary's ids
        mixed = np.matmul((attn * (1.0 - p_gen)[:, None])[:, None, :], p.scatter)[:, 0]
        mixed[:, :self.gen_vocab] += p_gen[:, None] * vocab
        # an impossible id gets log(tiny) = -87, still above the NEG that decoding bans ids with
        return Output(np.log(np.maximum(mixed, _TINY)), switch < 0, State(h, c, context, attn, state.coverage + attn))
