"""Tests of the decoders' limit on recurring n-grams."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cqr_rasa.model.decoding import _blocked, breaks_rules
from cqr_rasa.rewriter import RewriterConfig


@pytest.mark.parametrize("ids, n, limit, expected", [
    ([5, 6, 7, 5, 6], 3, 1, {6, 7}),  # "5 6 7" again would be its second time
    ([5, 6, 7, 5, 6], 3, 2, {6}),  # a second time is allowed
    ([5, 6, 7, 5, 6, 7, 5, 6], 3, 2, {6, 7}),  # a third is not
    ([5, 6, 7, 5, 6, 8, 5, 6], 3, 2, {6}),  # "5 6 7" and "5 6 8" once each
    ([5, 6, 5, 6], 0, 1, {6}),  # no limit: only the last id right away
    ([], 3, 1, set()),
])
def test_blocked_ids(ids, n, limit, expected):
    assert set(_blocked(ids, n, limit)) == expected


@pytest.mark.parametrize("ids, expected", [
    ([4, 9], set()),  # "Jing" may follow "Jing" once, as in the dialogue
    ([4, 9, 9], {9}),  # but not a third time in a row
    ([4, 7], {7}),  # other ids still never follow themselves
])
def test_an_id_the_dialogue_doubles_may_follow_itself_once(ids, expected):
    assert set(_blocked(ids, 3, 2, doubled={9})) == expected


@pytest.mark.parametrize("value", [0, -1, 1.5, True])
def test_max_ngram_count_must_be_a_positive_integer(value):
    with pytest.raises(ValueError, match="max_ngram_count"):
        RewriterConfig(max_ngram_count=value)


@given(st.lists(st.integers(4, 7), max_size=14), st.integers(0, 4), st.integers(1, 3),
       st.sets(st.integers(4, 7)))
def test_breaks_rules_is_blocked_applied_at_every_step(ids, n, limit, doubled):
    expected = any(t in _blocked(ids[:k], n, limit, doubled) for k, t in enumerate(ids))
    assert breaks_rules(ids, n, limit, doubled) == expected
