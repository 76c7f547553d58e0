"""Contracts of the pointer-generator network over a small grid of sizes (synthetic batches)."""
import pytest
import torch

from cqr_rasa.features import BOS_ID, PAD_ID, UNK_ID, make_batch
from cqr_rasa.model.network import extended_logp, target_logp

GRID_LENGTHS = {"one": [7], "three_padded": [9, 4, 6]}
HIDDEN = [8, 16]


def grid(test):
    test = pytest.mark.parametrize("hidden", HIDDEN)(test)
    return pytest.mark.parametrize("lengths", list(GRID_LENGTHS.values()),
                                   ids=list(GRID_LENGTHS))(test)


def largest(tensor):
    """The largest entry, 0 for an empty tensor (padding-free rows)."""
    return float(tensor.detach().max()) if tensor.numel() else 0.0


def first_step(model, batch, prev=None):
    encoded = model.encode(batch)
    projected = model.attn_states(encoded.states)
    state = model.initial_state(encoded)
    if prev is None:
        prev = torch.full((batch.ext_ids.size(0),), BOS_ID, dtype=torch.long)
    return encoded, projected, model.step(encoded, projected, state, prev)


def teacher_forced_steps(model, batch, inputs=None):
    """Runs `step` along the targets (or feeding `inputs` after the first step, one id per
    step); yields each step's output."""
    encoded = model.encode(batch)
    projected = model.attn_states(encoded.states)
    state = model.initial_state(encoded)
    prev = torch.full((batch.targets.size(0),), BOS_ID, dtype=torch.long)
    for t in range(batch.targets.size(1)):
        step = model.step(encoded, projected, state, prev)
        yield t, step, state
        state = step.state
        prev = batch.targets[:, t] if inputs is None else torch.full_like(prev, inputs[t])


@grid
def test_encode_shapes(case, network, lengths, hidden):
    _, batch = case(lengths)
    model = network(hidden).eval()
    encoded = model.encode(batch)
    size, src_len = len(lengths), max(lengths)
    assert encoded.states.shape == (size, src_len, 2 * hidden)
    assert torch.equal(encoded.mask, batch.source_mask)
    assert encoded.init[0].shape == encoded.init[1].shape == (size, hidden)
    assert encoded.rewrite_logit.shape == (size,)
    assert torch.isfinite(encoded.states).all() and torch.isfinite(encoded.rewrite_logit).all()
    # padded positions of the BiLSTM output stay zero
    for b, n in enumerate(lengths):
        assert largest(encoded.states[b, n:].abs()) == 0.0


@grid
def test_step_shapes_and_switch(case, network, lengths, hidden):
    _, batch = case(lengths)
    model = network(hidden).eval()
    _, _, step = first_step(model, batch)
    size, src_len, gen = len(lengths), max(lengths), model.config.gen_vocab
    assert step.log_p_gen.shape == step.log_p_copy.shape == (size,)
    assert step.vocab_logp.shape == (size, gen)
    assert step.attn_logp.shape == step.attn.shape == (size, src_len)
    assert step.state.h.shape == step.state.c.shape == (size, hidden)
    assert step.state.context.shape == (size, 2 * hidden)
    assert step.state.coverage.shape == (size, src_len)
    torch.testing.assert_close(step.log_p_gen.exp() + step.log_p_copy.exp(),
                               torch.ones(size), atol=1e-5, rtol=0)
    torch.testing.assert_close(step.vocab_logp.exp().sum(-1), torch.ones(size), atol=1e-5, rtol=0)
    torch.testing.assert_close(step.attn.sum(-1), torch.ones(size), atol=1e-5, rtol=0)
    # coverage accumulates the attention of the step
    torch.testing.assert_close(step.state.coverage, step.attn)


@grid
def test_extended_distribution_sums_to_one(case, network, lengths, hidden):
    _, batch = case(lengths, target_lengths=[4] * len(lengths))
    model = network(hidden).eval()
    gen = model.config.gen_vocab
    with torch.no_grad():
        for _, step, _ in teacher_forced_steps(model, batch):
            logp = extended_logp(step, batch.ext_ids, gen, batch.max_oov)
            assert logp.shape == (len(lengths), gen + batch.max_oov)
            assert torch.isfinite(logp).all()
            torch.testing.assert_close(logp.exp().sum(-1), torch.ones(len(lengths)),
                                       atol=1e-4, rtol=0)


@grid
def test_padding_gets_no_probability(case, network, lengths, hidden):
    sources, batch = case(lengths, target_lengths=[4] * len(lengths))
    model = network(hidden).eval()
    gen = model.config.gen_vocab
    with torch.no_grad():
        for _, step, _ in teacher_forced_steps(model, batch):
            logp = extended_logp(step, batch.ext_ids, gen, batch.max_oov)
            for b, source in enumerate(sources):
                n = len(source.words)
                assert largest(step.attn[b, n:]) < 1e-6
                assert largest(step.attn_logp[b, n:].exp()) < 1e-6
                assert step.attn[b, :n].min() > 0
                # OOV slots this dialogue does not have can be neither generated nor copied
                assert largest(logp[b, gen + len(source.oov):].exp()) < 1e-6
                # its own OOV words can be copied
                assert logp[b, gen:gen + len(source.oov)].exp().min() > 1e-6
                # copy mass on an id equals p_copy times the attention on its positions
                for k in range(len(source.oov)):
                    hits = [i for i, e in enumerate(source.ext_ids) if e == gen + k]
                    expected = step.log_p_copy[b].exp() * step.attn[b, hits].sum()
                    assert float(logp[b, gen + k].exp()) == pytest.approx(float(expected),
                                                                         rel=1e-4)


def test_padding_does_not_change_the_encoding(case, network):
    sources, batch = case([9, 4, 6])
    model = network(16).eval()
    with torch.no_grad():
        together = model.encode(batch)
        for b, source in enumerate(sources):
            alone = model.encode(make_batch([source]))
            n = len(source.words)
            torch.testing.assert_close(alone.states[0], together.states[b, :n],
                                       atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(alone.rewrite_logit[0], together.rewrite_logit[b],
                                       atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(alone.init[0][0], together.init[0][b], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("hidden", HIDDEN)
def test_every_parameter_gets_a_gradient(case, network, hidden):
    sources, batch = case([9, 4, 6], target_lengths=[4, 3, 5])
    model = network(hidden).train()
    gen = model.config.gen_vocab
    assert (batch.targets >= gen).any() and ((batch.targets > 3) & (batch.targets < gen)).any()
    assert 0 < batch.needs_rewrite.sum() < len(sources)
    losses = model(batch)
    (losses.nll + losses.coverage + losses.rewrite).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


@grid
def test_losses_are_finite_and_non_negative(case, network, lengths, hidden):
    _, batch = case(lengths)
    for mode in ("train", "eval"):
        model = network(hidden, dropout=0.3 if mode == "train" else 0.0)
        model.train(mode == "train")
        losses = model(batch)
        for name, value in losses._asdict().items():
            assert value.dim() == 0, name
            assert torch.isfinite(value), name
            assert value.item() >= 0, name
        assert losses.nll.item() > 0  # an untrained network is not certain


@pytest.mark.parametrize("lengths", list(GRID_LENGTHS.values()), ids=list(GRID_LENGTHS))
def test_target_logp_matches_extended_distribution(case, network, lengths):
    _, batch = case(lengths)
    model = network(16).eval()
    gen = model.config.gen_vocab
    with torch.no_grad():
        _, _, step = first_step(model, batch)
        full = extended_logp(step, batch.ext_ids, gen, batch.max_oov)
        size = len(lengths)
        # every possible target id, in-vocabulary and OOV, scored both ways
        for target in range(gen + batch.max_oov):
            targets = torch.full((size, 1), target, dtype=torch.long)
            scored = target_logp(step.log_p_gen[:, None], step.log_p_copy[:, None],
                                 step.vocab_logp[:, None], step.attn_logp[:, None],
                                 targets, batch.ext_ids, gen)
            assert scored.shape == (size, 1)
            possible = full[:, target] > -1e3
            torch.testing.assert_close(scored[possible, 0], full[possible, target],
                                       atol=1e-4, rtol=1e-5)
            # an id neither in the vocabulary nor in that dialogue is impossible both ways
            assert (scored[~possible, 0] < -1e3).all()


@pytest.mark.parametrize("lengths", list(GRID_LENGTHS.values()), ids=list(GRID_LENGTHS))
def test_forward_losses_match_stepwise_decoding(case, network, lengths):
    """The batched teacher-forced `forward` scores exactly what `step` + `extended_logp` give."""
    _, batch = case(lengths, target_lengths=[2, 4, 3][:len(lengths)])
    model = network(16).eval()
    gen = model.config.gen_vocab
    mask = (batch.targets != PAD_ID).float()
    nll, coverage = torch.zeros(()), torch.zeros(())
    with torch.no_grad():
        losses = model(batch)
        for t, step, before in teacher_forced_steps(model, batch):
            logp = extended_logp(step, batch.ext_ids, gen, batch.max_oov)
            picked = logp.gather(1, batch.targets[:, t:t + 1]).squeeze(1)
            nll -= (picked * mask[:, t]).sum()
            coverage += (torch.minimum(step.attn, before.coverage).sum(-1) * mask[:, t]).sum()
        tokens = mask.sum()
        bce = torch.nn.functional.binary_cross_entropy_with_logits(
            model.encode(batch).rewrite_logit, batch.needs_rewrite)
    torch.testing.assert_close(losses.nll, nll / tokens, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(losses.coverage, coverage / tokens, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(losses.rewrite, bce)


def test_nll_ignores_padding_after_eos(case, network):
    """Changing what follows EOS in a padded target must not change the loss."""
    _, batch = case([9, 4], target_lengths=[5, 2])
    model = network(8).eval()
    with torch.no_grad():
        base = model(batch)
        assert batch.targets[1, -1] == PAD_ID
        shorter = batch._replace(targets=batch.targets[:, :4])
        longer = batch._replace(targets=torch.cat(
            [batch.targets, torch.zeros_like(batch.targets[:, :2])], dim=1))
        for other in (longer,):
            torch.testing.assert_close(model(other).nll, base.nll)
        assert not torch.allclose(model(shorter).nll, base.nll)


def test_word_dropout_feeds_the_decoder_unk_in_training_only(case, network):
    """Dropping every previous word is teacher forcing with UNK after BOS; outside training mode
    the setting does nothing."""
    _, batch = case([9, 4, 6], target_lengths=[4, 3, 5])
    model = network(8, dropout=0.0)
    gen = model.config.gen_vocab
    mask = (batch.targets != PAD_ID).float()
    with torch.no_grad():
        model.eval()
        torch.testing.assert_close(model(batch, word_dropout=1.0).nll, model(batch).nll)
        nll = torch.zeros(())
        for t, step, _ in teacher_forced_steps(model, batch, [UNK_ID] * batch.targets.size(1)):
            logp = extended_logp(step, batch.ext_ids, gen, batch.max_oov)
            nll -= (logp.gather(1, batch.targets[:, t:t + 1]).squeeze(1) * mask[:, t]).sum()
        model.train()
        dropped = model(batch, word_dropout=1.0).nll
        assert not torch.allclose(dropped, model(batch).nll)
    torch.testing.assert_close(dropped, nll / mask.sum(), atol=1e-4, rtol=1e-4)
