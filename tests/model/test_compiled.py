"""The compiled (XLA) program encodes and greedily decodes one dialogue as `Engine` and the numpy
greedy decoder do."""
import numpy as np
import pytest

from cqr_rasa.features import PAD_ID
from cqr_rasa.model import Engine, greedy
from cqr_rasa.model.compiled import BUCKET, CompiledGreedy
from cqr_rasa.model.decoding import _blocked, doubled_ids

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


def assert_same_arrays(mine, theirs):
    """Two `Prepared` or two `State`s, field by field."""
    for a, b in zip(mine, theirs):
        if isinstance(b, np.ndarray):
            assert a.shape == b.shape
            np.testing.assert_allclose(a, b, atol=1e-5)
        else:
            assert a == b


def check(compiled, engine, source, uncopyable):
    """Compares the program with `Engine` and numpy decoding on one dialogue."""
    encoding, p_rewrite = engine.encode([source])
    prepared, state = engine.prepare(encoding)
    ext_ids = prepared.ext_ids.copy()
    ext_ids[0, uncopyable] = PAD_ID
    prepared = prepared._replace(ext_ids=ext_ids)
    doubled = doubled_ids(source)
    ruled = greedy(engine, prepared, state, MAX_LEN, 3, 1, [doubled])[0]
    found = compiled.rewrite(source, uncopyable, 0.0, 3, 1)  # threshold 0: decodes
    assert found.p_rewrite == pytest.approx(p_rewrite[0], abs=1e-5)
    assert_same_arrays(found.prepared, prepared)
    assert_same_arrays(found.state, state)
    if found.hypothesis is not None:
        assert_same_hypothesis(found.hypothesis, ruled)
        return
    # the first step the rules would have barred: up to it both wrote the same
    unruled = compiled._run(source, uncopyable, 0.0, MAX_LEN).hypothesis
    broken = next(k for k, t in enumerate(unruled.ids)
                  if t in _blocked(unruled.ids[:k], 3, 1, doubled))

    def head(hyp):
        return hyp._replace(**{field: value[:broken] for field, value in hyp._asdict().items()})

    assert_same_hypothesis(head(unruled), head(ruled))
    assert ruled.ids[broken] != unruled.ids[broken]


# lengths at and around the bucket boundaries. An untrained network repeats itself, so most of
# its rewrites break the rules; `test_rewriter` compares whole rewrites of a trained one.
@pytest.mark.parametrize("length", [4, BUCKET - 1, BUCKET, BUCKET + 1, 3 * BUCKET + 5])
def test_compiled_program_matches_the_engine_and_numpy_greedy(case, engine, length):
    compiled = CompiledGreedy(engine, MAX_LEN)
    for seed in range(4):
        sources, _ = case([length], seed=seed)
        check(compiled, engine, sources[0], [0, 2] if seed % 2 and length > 3 else [])


def test_below_the_threshold_the_program_does_not_decode(case, engine):
    compiled = CompiledGreedy(engine, MAX_LEN)
    source = case([10])[0][0]
    p_rewrite = compiled.rewrite(source, [], 0.0, 3, 1).p_rewrite
    above = compiled.rewrite(source, [], min(1.0, p_rewrite + 1e-3), 3, 1)
    assert above.hypothesis is None and above.p_rewrite == p_rewrite
    assert len(compiled._run(source, [], 0.0, 1).hypothesis.logps) == 1  # one step when told


def program_args(engine, n, start, threshold, steps):
    """The program's arguments for a `BUCKET`-word dialogue of `n` words."""
    import tensorflow as tf

    return [tf.constant(a) for a in (np.ones((BUCKET, len(engine.embeddings)), np.int32), n,
                                     start, np.arange(BUCKET, dtype=np.int32), threshold, steps)]


def test_warm_up_compiles_each_padded_length_and_the_direct_call_gives_the_programs_outputs(
        engine):
    compiled = CompiledGreedy(engine, MAX_LEN)
    compiled.warm_up(BUCKET + 1)
    assert list(compiled._programs) == [BUCKET, 2 * BUCKET]
    args = program_args(engine, 9, 3, 0.0, MAX_LEN)
    program = compiled._function.get_concrete_function(*args)
    # TensorFlow 2.12, which Rasa 3.6 pins: the call skips the signature checks
    assert hasattr(program, "_inference_function")
    for mine, theirs in zip(compiled._programs[BUCKET](args), program(*args)):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())


def test_one_program_serves_every_length_and_setting_within_its_bucket(engine):
    """XLA compiles anew for every value it must take as a constant: a `for t in tf.range(n)`
    made the dialogue's length one, and each new length cost a compile (0.45 s here). The
    program's HLO must not depend on the length, the utterance's start, the threshold or the
    number of steps."""
    compiled = CompiledGreedy(engine, MAX_LEN)

    def hlo(*settings):
        args = program_args(engine, *settings)
        return compiled._function.experimental_get_compiler_ir(*args)(stage="hlo")

    assert hlo(5, 3, 0.5, MAX_LEN) == hlo(BUCKET - 1, 20, 0.0, 2)
