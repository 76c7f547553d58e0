"""The numpy decoder step used at run time gives what the network's own PyTorch step gives."""
import numpy as np
import pytest
import torch

from cqr_rasa.model import StepEngine
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
def test_engine_step_matches_the_network_step(case, network, lengths, hidden):
    """Teacher-forced along targets that copy OOV words: every step, every row, padding too."""
    _, batch = case(lengths, target_lengths=[5] * len(lengths))
    model = network(hidden, seed=3).eval()
    engine = StepEngine(model)
    gen = model.config.gen_vocab
    with torch.no_grad():
        encoded = model.encode(batch)
        prepared = engine.prepare(encoded, batch.max_oov)
        state = engine.initial_state(encoded)
        prev = np.full(len(lengths), 2)  # BOS
        for t, step, _ in teacher_forced_steps(model, batch):
            out = engine.step(prepared, state, prev)
            assert_same_step(out, step, extended_logp(step, batch.ext_ids, gen, batch.max_oov))
            state, prev = out.state, batch.targets[:, t].numpy()


@pytest.mark.parametrize("hidden", HIDDEN)
def test_engine_steps_beams_of_one_dialogue(case, network, hidden):
    """Beam search runs several states over one encoded dialogue: rows broadcast."""
    _, batch = case(GRID_LENGTHS["one"], target_lengths=[4])
    model = network(hidden, seed=5).eval()
    engine = StepEngine(model)
    gen = model.config.gen_vocab
    with torch.no_grad():
        encoded = model.encode(batch)
        _, first, _ = next(teacher_forced_steps(model, batch))
        prepared = engine.prepare(encoded, batch.max_oov)
        one = engine.step(prepared, engine.initial_state(encoded), np.array([2]))
        # three beams continuing with three different words, among them an OOV copy
        words = np.array([batch.targets[0, 0].item(), gen, 5])
        beams = engine.step(prepared, one.state.take(np.array([0, 0, 0])), words)
        for row, word in enumerate(words.tolist()):
            expected = model.step(encoded, model.attn_states(encoded.states), first.state,
                                  torch.tensor([word]))
            assert_same_step(beams, expected,
                             extended_logp(expected, batch.ext_ids, gen, batch.max_oov),
                             rows=slice(row, row + 1))
