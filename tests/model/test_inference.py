"""The numpy engine used at run time computes what the PyTorch network computes."""
import numpy as np
import pytest
import torch

from cqr_rasa.features import BOS_ID
from cqr_rasa.model import Engine
from cqr_rasa.model.network import extended_logp

from test_network import GRID_LENGTHS, HIDDEN, grid, teacher_forced_steps

IMPOSSIBLE = -80.0  # both sides put ids that can be neither generated nor copied below this


def assert_same_step(out, step, torch_logp, rows=slice(None)):
    """`rows` of the engine's output against all rows of the PyTorch step."""
    reference = torch_logp.numpy()
    possible = reference > -50
    np.testing.assert_allclose(out.logp[rows][possible], reference[possible], atol=2e-5,
                               rtol=1e-5)
    assert (out.logp[rows][~possible] < IMPOSSIBLE).all()
    np.testing.assert_array_equal(out.copied[rows], (step.log_p_copy > step.log_p_gen).numpy())
    for mine, theirs in ((out.state.h, step.state.h), (out.state.c, step.state.c),
                         (out.state.attn, step.attn), (out.state.coverage, step.state.coverage),
                         (out.state.context, step.state.context)):
        np.testing.assert_allclose(mine[rows], theirs.numpy(), atol=2e-6, rtol=1e-5)


@grid
@pytest.mark.parametrize("pytorch_from", [1000, 0], ids=["numpy_lstm", "pytorch_lstm"])
def test_engine_encodes_as_the_network_does(case, network, lengths, hidden, pytorch_from):
    """Padded rows included: each dialogue's backward LSTM starts at its own last word. Both
    ways of running the encoder's LSTM (short dialogues in numpy, long ones in PyTorch)."""
    sources, batch = case(lengths)
    model = network(hidden, seed=1).eval()
    with torch.no_grad():
        encoded = model.encode(batch)
    engine = Engine(model)
    engine.pytorch_from = pytorch_from
    encoding, p_rewrite = engine.encode(sources)
    prepared, state = engine.prepare(encoding)
    np.testing.assert_allclose(prepared.states, encoded.states.numpy(), atol=2e-6, rtol=1e-5)
    np.testing.assert_array_equal(prepared.ext_ids, encoded.ext_ids.numpy())
    np.testing.assert_allclose(state.h, encoded.init[0].numpy(), atol=2e-6, rtol=1e-5)
    np.testing.assert_allclose(state.c, encoded.init[1].numpy(), atol=2e-6, rtol=1e-5)
    np.testing.assert_allclose(p_rewrite, torch.sigmoid(encoded.rewrite_logit).numpy(),
                               atol=1e-6, rtol=1e-5)
    assert prepared.width == model.config.gen_vocab + batch.max_oov
    if encoded.mask.all():
        assert prepared.padding is None
    else:
        np.testing.assert_array_equal(prepared.padding == 0, encoded.mask.numpy())
        assert np.isneginf(prepared.padding[~encoded.mask.numpy()]).all()


@grid
@pytest.mark.parametrize("shift", [False, True], ids=["bounded", "shifted"])
def test_engine_step_matches_the_network_step(case, network, lengths, hidden, shift):
    """Teacher-forced along targets that copy OOV words: every step, every row, padding too.
    Both ways of taking the softmaxes: unshifted where tanh bounds their inputs (as here), shifted
    by the maximum where it does not."""
    sources, batch = case(lengths, target_lengths=[5] * len(lengths))
    model = network(hidden, seed=3).eval()
    engine = Engine(model)
    assert not engine.shift_scores and not engine.shift_logits
    engine.shift_scores = engine.shift_logits = shift
    gen = model.config.gen_vocab
    with torch.no_grad():
        prepared, state = engine.prepare(engine.encode(sources)[0])
        prev = np.full(len(lengths), BOS_ID)
        for t, step, _ in teacher_forced_steps(model, batch):
            out = engine.step(prepared, state, prev)
            assert_same_step(out, step, extended_logp(step, batch.ext_ids, gen, batch.max_oov))
            state, prev = out.state, batch.targets[:, t].numpy()


@pytest.mark.parametrize("hidden", HIDDEN)
def test_engine_steps_beams_of_one_dialogue(case, network, hidden):
    """Beam search runs several states over one encoded dialogue: rows broadcast."""
    sources, batch = case(GRID_LENGTHS["one"], target_lengths=[4])
    model = network(hidden, seed=5).eval()
    engine = Engine(model)
    gen = model.config.gen_vocab
    with torch.no_grad():
        encoded = model.encode(batch)
        _, first, _ = next(teacher_forced_steps(model, batch))
        prepared, state = engine.prepare(engine.encode(sources)[0])
        one = engine.step(prepared, state, np.array([BOS_ID]))
        # three beams continuing with three different words, among them an OOV copy
        words = np.array([batch.targets[0, 0].item(), gen, 5])
        beams = engine.step(prepared, one.state.take(np.array([0, 0, 0])), words)
        for row, word in enumerate(words.tolist()):
            expected = model.step(encoded, model.attn_states(encoded.states), first.state,
                                  torch.tensor([word]))
            assert_same_step(beams, expected,
                             extended_logp(expected, batch.ext_ids, gen, batch.max_oov),
                             rows=slice(row, row + 1))
