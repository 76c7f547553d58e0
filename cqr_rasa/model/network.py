"""The pointer-generator network: a BiLSTM over the dialogue, an attention LSTM decoder with
coverage, and a learned switch mixing generation and copying (See et al. 2017; Rastogi et al. 2019).
"""
import contextlib
import os
from dataclasses import asdict, dataclass
from typing import Iterator, NamedTuple, Optional, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from cqr_rasa.features import (BIO_IDS, BOS_ID, EOS_ID, MAX_DISTANCE, PAD_ID, ROLE_NAMES,
                               SPEAKER_IDS, UNK_ID, Batch)

NEG = -1e4  # log-probability of an impossible choice: finite, so gradients never become NaN


@dataclass
class NetworkConfig:
    """Sizes of the network (vocabulary sizes come from the FeatureSpace)."""

    word_vocab: int
    gen_vocab: int
    intent_vocab: int
    type_vocab: int
    word_dim: int = 64
    feature_dim: int = 16
    hidden: int = 128
    attention: int = 32  # size of the additive attention's hidden layer
    dropout: float = 0.25

    def to_dict(self) -> dict:
        return asdict(self)


class Encoded(NamedTuple):
    states: torch.Tensor  # (batch, src_len, 2*hidden)
    mask: torch.Tensor  # (batch, src_len) bool
    ext_ids: torch.Tensor  # (batch, src_len) extended-vocabulary id of each source word
    init: Tuple[torch.Tensor, torch.Tensor]  # decoder (h, c), each (batch, hidden)
    rewrite_logit: torch.Tensor  # (batch,)


class DecoderState(NamedTuple):
    h: torch.Tensor  # (batch, hidden)
    c: torch.Tensor  # (batch, hidden)
    context: torch.Tensor  # (batch, 2*hidden)
    coverage: torch.Tensor  # (batch, src_len)
    attn: torch.Tensor  # (batch, src_len): the last step's attention


class Step(NamedTuple):
    """One decoder step: the switch and the two distributions, all as log-probabilities."""

    log_p_gen: torch.Tensor  # (batch,)
    log_p_copy: torch.Tensor  # (batch,) = log(1 - p_gen)
    vocab_logp: torch.Tensor  # (batch, gen_vocab)
    attn_logp: torch.Tensor  # (batch, src_len), NEG on padding
    attn: torch.Tensor  # (batch, src_len)
    state: DecoderState


class PointerGenerator(nn.Module):
    """Encodes a dialogue window and scores rewrites token by token over an extended vocabulary."""

    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        self.config = config
        d, f, h = config.word_dim, config.feature_dim, config.hidden
        self.word_embedding = nn.Embedding(config.word_vocab, d, padding_idx=PAD_ID)
        self.feature_embeddings = nn.ModuleList([
            nn.Embedding(len(SPEAKER_IDS) + 1, f, padding_idx=0),
            nn.Embedding(config.intent_vocab, f, padding_idx=0),
            nn.Embedding(len(BIO_IDS) + 1, f, padding_idx=0),
            nn.Embedding(config.type_vocab, f, padding_idx=0),
            nn.Embedding(len(ROLE_NAMES), f, padding_idx=0),
            nn.Embedding(MAX_DISTANCE + 2, f, padding_idx=0),
        ])
        self.encoder = nn.LSTM(d + 6 * f, h, batch_first=True, bidirectional=True)
        self.bridge = nn.Linear(4 * h, 2 * h)
        self.rewrite_head = nn.Sequential(nn.Linear(4 * h, h), nn.Tanh(), nn.Linear(h, 1))
        self.target_embedding = nn.Embedding(config.gen_vocab, d, padding_idx=PAD_ID)
        self.decoder = nn.LSTMCell(d + 4 * h, h)
        a = config.attention
        self.attn_states = nn.Linear(2 * h, a, bias=False)
        self.attn_query = nn.Linear(h, a)
        self.attn_coverage = nn.Parameter(torch.zeros(a))
        self.attn_v = nn.Linear(a, 1, bias=False)
        self.out = nn.Sequential(nn.Linear(3 * h, h), nn.Tanh(), nn.Linear(h, config.gen_vocab))
        self.switch = nn.Linear(3 * h + d, 1)
        self.dropout = nn.Dropout(config.dropout)

    def encode(self, batch: Batch) -> Encoded:
        feats = batch.features
        # shape: (batch, src_len, word_dim + 6 * feature_dim)
        x = torch.cat([self.word_embedding(feats[..., 0])]
                      + [emb(feats[..., i + 1]) for i, emb in enumerate(self.feature_embeddings)],
                      dim=-1)
        states = self.run_encoder(self.dropout(x), batch.source_mask.sum(1))
        pooled = torch.cat([_masked_max(states, batch.utterance_mask),
                            _masked_max(states, batch.source_mask)], dim=-1)
        h0, c0 = torch.tanh(self.bridge(pooled)).chunk(2, dim=-1)
        return Encoded(states, batch.source_mask, batch.ext_ids, (h0, c0),
                       self.rewrite_head(pooled).squeeze(-1))

    def run_encoder(self, x: torch.Tensor, lengths: Optional[torch.Tensor]) -> torch.Tensor:
        """The BiLSTM's states for embedded dialogues `x` (batch, src_len, input) of `lengths`
        words (None: all `src_len` long): (batch, src_len, 2 * hidden), zero on padding.

        Each direction runs over the padded batch on its own, the backward one on every
        dialogue reversed in place (padding stays at the end), so neither reads padding before a
        word. A packed sequence would do the same, but on the CPU its backward pass zero-fills a
        gradient the size of the whole batch at every time step: 4x slower for 32 dialogues of
        150 words, and most of a training step."""
        enc = self.encoder
        length = x.size(1)
        if lengths is not None:
            lengths = lengths.clamp(min=1).cpu().unsqueeze(1)
        # no padding (always so for one dialogue): one call, 0.2 ms less for 105 words here, and
        # 0.07 ms less again when the caller says so (None) rather than the lengths showing it
        if lengths is None or bool((lengths == length).all()):
            return enc(x)[0]
        positions = torch.arange(length)
        # shape: (batch, src_len): the reversal, its own inverse
        order = torch.where(positions < lengths, lengths - 1 - positions, positions)
        zeros = x.new_zeros(1, x.size(0), self.config.hidden)

        def run(inputs: torch.Tensor, suffix: str) -> torch.Tensor:
            weights = [getattr(enc, f"{name}_l0{suffix}")
                       for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            # what nn.LSTM calls, here with one direction's weights
            return torch.lstm(inputs, (zeros, zeros), weights, True, 1, 0.0, self.training,
                              False, True)[0]

        def reverse(t: torch.Tensor) -> torch.Tensor:
            return t.gather(1, order.unsqueeze(-1).expand(-1, -1, t.size(-1)))

        states = torch.cat([run(x, ""), reverse(run(reverse(x), "_reverse"))], dim=-1)
        return states.masked_fill((positions >= lengths).unsqueeze(-1), 0.0)

    def initial_state(self, encoded: Encoded) -> DecoderState:
        batch, src_len, width = encoded.states.shape
        zeros = encoded.states.new_zeros
        return DecoderState(encoded.init[0], encoded.init[1], zeros(batch, width),
                            zeros(batch, src_len), zeros(batch, src_len))

    def step(self, encoded: Encoded, projected: torch.Tensor, state: DecoderState,
             prev_ids: torch.Tensor) -> Step:
        """One decoding step. `projected` is `attn_states(encoded.states)`, computed once.

        With `extended_logp`, this is the reference definition of a step: rewriting runs the
        same step in numpy (`cqr_rasa.model.inference.Engine`), which tests hold equal to it."""
        emb, word_gates = self._embed(prev_ids)
        selective = _read(state.attn * _hits(encoded, prev_ids), encoded.states)
        h, c, attn_logp = self._recur(encoded, projected, state, word_gates, selective,
                                      self._recurrent_weights())
        attn = attn_logp.exp()
        context = _read(attn, encoded.states)
        log_p_gen, log_p_copy, vocab_logp = self._output(h, context, emb)
        return Step(log_p_gen, log_p_copy, vocab_logp, attn_logp, attn,
                    DecoderState(h, c, context, state.coverage + attn, attn))

    def _embed(self, prev_ids: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """The previous words' embeddings (copied OOV words as UNK), and their share of the
        decoder LSTM's gates, with its biases; any leading shape."""
        gen_ids = prev_ids.masked_fill(prev_ids >= self.config.gen_vocab, UNK_ID)
        emb = self.dropout(self.target_embedding(gen_ids))
        cell = self.decoder
        return emb, F.linear(emb, cell.weight_ih[:, :self.config.word_dim],
                             cell.bias_ih + cell.bias_hh)

    def _recurrent_weights(self) -> torch.Tensor:
        """The decoder LSTM's weights for [context, selective read, h]: (4 * hidden + hidden,
        4 * hidden), so that one product gives all but the previous word's share of the gates."""
        cell = self.decoder
        return torch.cat([cell.weight_ih[:, self.config.word_dim:], cell.weight_hh], dim=1).t()

    def _recur(self, encoded: Encoded, projected: torch.Tensor, state: DecoderState,
               word_gates: torch.Tensor, selective: torch.Tensor, weights: torch.Tensor
               ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The recurrent part of a step: the decoder LSTM (nn.LSTMCell's update, its gates in
        the order i, f, g, o) and the attention with coverage. Returns h, c and the attention's
        log-probabilities (NEG on padding)."""
        gates = torch.addmm(word_gates, torch.cat([state.context, selective, state.h], dim=-1),
                            weights)
        i, f, g, o = gates.chunk(4, dim=-1)
        c = torch.sigmoid(f) * state.c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        # shape: (batch, src_len, attention)
        energy = torch.tanh(projected + self.attn_query(h).unsqueeze(1)
                            + state.coverage.unsqueeze(-1) * self.attn_coverage)
        scores = self.attn_v(energy).squeeze(-1).masked_fill(~encoded.mask, float("-inf"))
        return h, c, F.log_softmax(scores, dim=-1).masked_fill(~encoded.mask, NEG)

    def _output(self, h: torch.Tensor, context: torch.Tensor, emb: torch.Tensor
                ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Switch and vocabulary distribution; works on (batch, ...) or (batch, steps, ...)."""
        features = torch.cat([self.dropout(h), context], dim=-1)
        switch = self.switch(torch.cat([features, emb], dim=-1)).squeeze(-1)
        return (F.logsigmoid(switch), F.logsigmoid(-switch),
                F.log_softmax(self.out(features), dim=-1))

    def forward(self, batch: Batch, word_dropout: float = 0.0) -> "Losses":
        """Teacher-forced losses: negative log-likelihood, coverage and the rewrite decision.

        In training mode, `word_dropout` is the share of the previous words fed to the decoder
        (after the first step) that are replaced by UNK, which also empties their selective
        read: the decoder learns not to lean on its last word alone, which at run time may be a
        wrong one.

        This is `step` over the gold words, with what does not depend on the decoder's state
        computed once for all steps (the previous words' share of the gates, and the output
        layers), and each step's context read in one product with the next step's selective
        read."""
        assert batch.targets is not None and batch.needs_rewrite is not None
        encoded = self.encode(batch)
        projected = self.attn_states(encoded.states)
        state = self.initial_state(encoded)
        targets = batch.targets
        prev = torch.cat([torch.full_like(targets[:, :1], BOS_ID), targets[:, :-1]], dim=1)
        if self.training and word_dropout > 0:
            dropped = torch.rand(prev.shape) < word_dropout
            dropped[:, 0] = False
            prev = prev.masked_fill(dropped, UNK_ID)
        embs, word_gates = self._embed(prev)
        weights = self._recurrent_weights()
        # shape: (batch, tgt_len, src_len): where each step's next input word is in the source
        # (nothing after the last step: PAD is never a source word)
        hits = _hits(encoded, torch.cat([prev[:, 1:], torch.full_like(prev[:, :1], PAD_ID)],
                                        dim=1)).unbind(1)
        selective = state.context  # zero: nothing was read before the first step
        hs, contexts, attn_logps, coverages = [], [], [], []
        for gates_t, next_hits in zip(word_gates.unbind(1), hits):
            h, c, attn_logp = self._recur(encoded, projected, state, gates_t, selective, weights)
            attn = attn_logp.exp()
            context, selective = torch.bmm(torch.stack([attn, attn * next_hits], dim=1),
                                           encoded.states).unbind(1)
            coverages.append(state.coverage)
            state = DecoderState(h, c, context, state.coverage + attn, attn)
            hs.append(h)
            contexts.append(context)
            attn_logps.append(attn_logp)
        # shape: (batch, tgt_len, ...): the output layers run once over all steps
        log_p_gen, log_p_copy, vocab_logp = self._output(
            torch.stack(hs, 1), torch.stack(contexts, 1), embs)
        attn_logp = torch.stack(attn_logps, 1)
        logp = target_logp(log_p_gen, log_p_copy, vocab_logp, attn_logp,
                           targets, batch.ext_ids, self.config.gen_vocab)
        coverage = torch.minimum(attn_logp.exp(), torch.stack(coverages, 1)).sum(-1)
        mask = (targets != PAD_ID).float()
        tokens = mask.sum().clamp(min=1)
        return Losses(
            -(logp * mask).sum() / tokens,
            (coverage * mask).sum() / tokens,
            F.binary_cross_entropy_with_logits(encoded.rewrite_logit, batch.needs_rewrite),
        )


class Losses(NamedTuple):
    nll: torch.Tensor
    coverage: torch.Tensor
    rewrite: torch.Tensor


def target_logp(log_p_gen: torch.Tensor, log_p_copy: torch.Tensor, vocab_logp: torch.Tensor,
                attn_logp: torch.Tensor, targets: torch.Tensor, ext_ids: torch.Tensor,
                gen_vocab: int) -> torch.Tensor:
    """log P(target) = logsumexp(log p_gen + log P_vocab, log(1 - p_gen) + log P_copy).

    Shapes: switch terms and targets (batch, steps), vocab_logp (batch, steps, gen_vocab),
    attn_logp (batch, steps, src_len), ext_ids (batch, src_len).
    """
    in_vocab = targets < gen_vocab
    vocab = vocab_logp.gather(-1, targets.clamp(max=gen_vocab - 1).unsqueeze(-1)).squeeze(-1)
    vocab = vocab.masked_fill(~in_vocab, NEG)
    # shape: (batch, steps, src_len): True where the source word is the target word
    hits = ext_ids.unsqueeze(1) == targets.unsqueeze(-1)
    copy = torch.logsumexp(attn_logp.masked_fill(~hits, NEG), dim=-1)
    return torch.logaddexp(log_p_gen + vocab, log_p_copy + copy)


def extended_logp(step: Step, ext_ids: torch.Tensor, gen_vocab: int, max_oov: int) -> torch.Tensor:
    """The full distribution over generation vocabulary + source OOV words, in log space."""
    batch = ext_ids.size(0)
    vocab = torch.cat([step.vocab_logp, step.vocab_logp.new_full((batch, max_oov), NEG)], dim=1)
    # shape: (batch, gen_vocab + max_oov): attention mass summed per extended id
    copy = step.attn.new_zeros(batch, gen_vocab + max_oov).scatter_add(1, ext_ids, step.attn)
    copy_logp = torch.where(copy > 0, copy.clamp(min=1e-30).log(), copy.new_tensor(NEG))
    return torch.logaddexp(step.log_p_gen.unsqueeze(1) + vocab,
                           step.log_p_copy.unsqueeze(1) + copy_logp)


def _hits(encoded: Encoded, prev_ids: torch.Tensor) -> torch.Tensor:
    """Where the previous output word is in the source, for CopyNet's selective read: the
    encoder states at those positions, weighted by the attention that picked them. After copying
    "Imagine" it points at that very position, so the decoder goes on to "Dragons" instead of
    starting the name again; after a generated word that the attention did not point at, it is
    close to zero. `prev_ids` (batch, ...) gives (batch, ..., src_len), 1.0 at a hit."""
    ext_ids = encoded.ext_ids.view(len(prev_ids), *[1] * (prev_ids.dim() - 1), -1)
    mask = encoded.mask.view(ext_ids.shape)
    return ((ext_ids == prev_ids.unsqueeze(-1)) & mask).float()


def _read(weights: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
    """The states (batch, src_len, width) summed with `weights` (batch, src_len)."""
    return torch.bmm(weights.unsqueeze(1), states).squeeze(1)


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Runs the block with `threads` intra-op threads (at most the machine's cores), then
    restores the previous setting. This network's operations are small: threads that do not
    each have a core to themselves wait on each other (see `TrainConfig.threads`)."""
    threads = max(1, min(threads, os.cpu_count() or 1))
    previous = torch.get_num_threads()
    if threads == previous:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _masked_max(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # shape: (batch, 2 * hidden)
    return states.masked_fill(~mask.unsqueeze(-1), -1e4).max(dim=1).values


__all__ = ["NetworkConfig", "PointerGenerator", "Losses", "Step", "target_logp", "extended_logp",
           "torch_threads", "EOS_ID", "NEG"]
