"""The compiled (XLA) greedy decoder writes what the numpy greedy decoder writes."""
import numpy as np
import pytest

from cqr_rasa.model import Engine, greedy
from cqr_rasa.model.compiled import BUCKET, CompiledGreedy
from cqr_rasa.model.decoding import _blocked

MAX_LEN = 12


@pytest.fixture
def engine(network):
    return Engine(network(16, seed=7).eval())


def assert_same_hypothesis(mine, theirs):
    assert mine.ids == theirs.ids
    np.testing.assert_allclose(mine.logps, theirs.logps, atol=1e-4, rtol=1e-5)
    assert mine.copied == theirs.copied
    assert len(mine.attention) == len(theirs.attention)
    for a, b in zip(mine.attention, theirs.attention):
        np.testing.assert_allclose(a, b, atol=1e-5)


def check(compiled, engine, prepared, state):
    """Compares the two decoders on one dialogue."""
    ruled = greedy(engine, prepared, state, MAX_LEN, 3, 1, [set()])[0]
    mine = compiled.decode(prepared, state, 3, 1, set())
    if mine is not None:
        assert_same_hypothesis(mine, ruled)
        return
    # the first step the rules would have barred: up to it both wrote the same
    unruled = compiled._run(prepared, state, MAX_LEN)
    broken = next(k for k, t in enumerate(unruled.ids) if t in _blocked(unruled.ids[:k], 3, 1))
    def head(hyp):
        return hyp._replace(**{field: value[:broken] for field, value in hyp._asdict().items()})

    assert_same_hypothesis(head(unruled), head(ruled))
    assert ruled.ids[broken] != unruled.ids[broken]


# lengths at and around the bucket boundaries. An untrained network repeats itself, so most of
# its rewrites break the rules; `test_rewriter` compares whole rewrites of a trained one.
@pytest.mark.parametrize("length", [4, BUCKET - 1, BUCKET, BUCKET + 1, 3 * BUCKET + 5])
def test_compiled_greedy_matches_numpy_greedy(case, engine, length):
    compiled = CompiledGreedy(engine, MAX_LEN)
    for seed in range(4):
        sources, _ = case([length], seed=seed)
        check(compiled, engine, *engine.prepare(engine.encode(sources)[0]))

