"""Tests of cqr_rasa.augment: moving spans when values change, consistent swaps, value pools."""
import copy
import random

import pytest

from cqr_rasa.augment import replace_values, swap_entities, value_pool
from cqr_rasa.dialogue import BOT, USER, EntitySpan, Example, Turn


def span(text, phrase, entity, value=None, occurrence=0):
    start = -1
    for _ in range(occurrence + 1):
        start = text.index(phrase, start + 1)
    return EntitySpan(start, start + len(phrase), entity, value)


def covered(text, spans):
    return [(text[s.start:s.end], s.entity) for s in spans]


# --- replace_values --------------------------------------------------------------------------

def test_longer_replacement_moves_the_span_and_the_ones_after():
    text = "Adele sang Hello in London"
    spans = [span(text, "Adele", "artist"), span(text, "Hello", "song", "hello"),
             span(text, "London", "city")]
    new_text, new_spans = replace_values(text, spans, {"adele": "Imagine Dragons"})
    assert new_text == "Imagine Dragons sang Hello in London"
    assert covered(new_text, new_spans) == [("Imagine Dragons", "artist"), ("Hello", "song"),
                                            ("London", "city")]
    assert new_spans[0] == EntitySpan(0, 15, "artist")
    assert new_spans[1].value == "hello"  # untouched spans keep their value


def test_shorter_replacement_moves_the_spans_after():
    text = "'Believer' is by Imagine Dragons and 'Thunder' too"
    spans = [span(text, "Believer", "song"), span(text, "Imagine Dragons", "artist"),
             span(text, "Thunder", "song")]
    new_text, new_spans = replace_values(text, spans, {"imagine dragons": "Sia"})
    assert new_text == "'Believer' is by Sia and 'Thunder' too"
    assert covered(new_text, new_spans) == [("Believer", "song"), ("Sia", "artist"),
                                            ("Thunder", "song")]
    assert new_spans[0] == spans[0]  # before the replacement: unchanged
    assert new_spans[2].start == spans[2].start - len("Imagine Dragons") + len("Sia")


def test_several_replacements_shift_later_spans_by_the_total():
    text = "Adele or Adele , then Hello by Coldplay"
    spans = [span(text, "Adele", "artist", occurrence=1), span(text, "Hello", "song"),
             span(text, "Coldplay", "artist")]
    mapping = {"adele": "Zorblax Quintet", "coldplay": "U2"}
    new_text, new_spans = replace_values(text, spans, mapping)
    assert new_text == "Zorblax Quintet or Zorblax Quintet , then Hello by U2"
    assert covered(new_text, new_spans) == [("Zorblax Quintet", "artist"), ("Hello", "song"),
                                            ("U2", "artist")]
    assert new_spans[0].start == len("Zorblax Quintet or ")


def test_matching_ignores_case_and_spacing_but_respects_word_edges():
    text = "play IMAGINE   dragons, not Asia or Sia's siamese"
    new_text, _ = replace_values(text, [], {"imagine dragons": "Coldplay", "sia": "Adele"})
    assert new_text == "play Coldplay, not Asia or Adele's siamese"


def test_longest_key_wins_and_special_characters_are_literal():
    text = "play Imagine Dragons and P!nk, then Dragons"
    new_text, new_spans = replace_values(
        text, [span(text, "Imagine Dragons", "artist"), span(text, "P!nk", "artist")],
        {"dragons": "X", "imagine dragons": "Coldplay", "p!nk": "Lorde"})
    assert new_text == "play Coldplay and Lorde, then X"
    assert covered(new_text, new_spans) == [("Coldplay", "artist"), ("Lorde", "artist")]


def test_partly_overlapping_span_is_dropped():
    text = "the Imagine Dragons tour starts today"
    spans = [span(text, "Imagine Dragons tour", "event"), span(text, "today", "date")]
    new_text, new_spans = replace_values(text, spans, {"imagine dragons": "Sia"})
    assert new_text == "the Sia tour starts today"
    assert covered(new_text, new_spans) == [("today", "date")]


def test_empty_mapping_and_no_match_keep_everything():
    text = "play Hello"
    spans = [span(text, "Hello", "song")]
    assert replace_values(text, spans, {}) == (text, spans)
    assert replace_values(text, spans, {"adele": "Sia"}) == (text, spans)


def test_possessive_follows_the_new_value():
    new_text, _ = replace_values("play Imagine Dragons' latest album", [],
                                 {"imagine dragons": "Coldplay"})
    assert new_text == "play Coldplay's latest album"


# --- swap_entities ---------------------------------------------------------------------------

def music_example():
    question = "who sings believer"
    answer = "'Believer' is by Imagine Dragons"
    follow = "is imagine dragons touring"
    return Example(
        turns=[
            Turn(USER, question, "ask", [span(question, "believer", "song")]),
            Turn(BOT, answer, None, [span(answer, "Believer", "song"),
                                     span(answer, "Imagine Dragons", "artist")]),
            Turn(USER, follow, "ask_tour", [span(follow, "imagine dragons", "artist")]),
            Turn(BOT, "yes, they are"),
            Turn(USER, "play their latest album", "play"),
        ],
        rewrite="play the latest album by Imagine Dragons",
        id="music-1",
        gold_values=["Imagine Dragons"],
        alternatives=["play Imagine Dragons latest album", "play believer"],
        category=["pronoun"],
    )


POOL = {"artist": ["Zorblax Quintet", "Vexlor"], "song": ["Moonglade", "Orbit Of Glass"]}


@pytest.mark.parametrize("seed", range(4))
def test_swap_replaces_consistently_everywhere(seed):
    example = music_example()
    before = copy.deepcopy(example)
    swapped = swap_entities(example, POOL, random.Random(seed), probability=1.0)
    assert example == before  # the original is not modified
    assert swapped is not example
    artist = next(v for v in POOL["artist"] if v in swapped.turns[1].text)
    song = next(v for v in POOL["song"] if v.lower() in swapped.turns[0].text.lower())
    assert swapped.turns[0].text == f"who sings {song}"
    assert swapped.turns[1].text == f"'{song}' is by {artist}"
    assert swapped.turns[2].text == f"is {artist} touring"
    assert swapped.turns[3].text == "yes, they are"
    assert swapped.rewrite == f"play the latest album by {artist}"
    assert swapped.gold_values == [artist]
    assert swapped.alternatives == [f"play {artist} latest album", f"play {song}"]
    # every span still covers its (new) value and keeps its type
    expected = [[(song, "song")], [(song, "song"), (artist, "artist")], [(artist, "artist")],
                [], []]
    assert [covered(t.text, t.entities) for t in swapped.turns] == expected
    # everything else is kept
    assert [t.speaker for t in swapped.turns] == [t.speaker for t in example.turns]
    assert [t.intent for t in swapped.turns] == [t.intent for t in example.turns]
    assert (swapped.id, swapped.category) == (example.id, example.category)


def test_swap_uses_both_pool_values_over_seeds():
    seen = {swap_entities(music_example(), POOL, random.Random(seed), 1.0).gold_values[0]
            for seed in range(20)}
    assert seen == set(POOL["artist"])


def test_swap_with_zero_probability_returns_the_example():
    example = music_example()
    assert swap_entities(example, POOL, random.Random(0), probability=0.0) is example


def test_swap_needs_two_values_of_a_type():
    example = music_example()
    pool = {"artist": ["Zorblax Quintet"], "song": ["Moonglade", "Orbit"]}
    swapped = swap_entities(example, pool, random.Random(1), probability=1.0)
    assert "Imagine Dragons" in swapped.turns[1].text
    assert swapped.rewrite == example.rewrite
    assert "believer" not in swapped.turns[0].text  # songs still swapped


def test_swap_never_maps_a_value_to_itself():
    example = music_example()
    pool = {"artist": ["imagine DRAGONS", "Imagine Dragons"], "song": ["Believer", "believer"]}
    assert swap_entities(example, pool, random.Random(0), probability=1.0) is example


# --- value_pool ------------------------------------------------------------------------------

def test_value_pool_groups_distinct_values_by_type():
    other_text = "Hello is by Adele"
    other = Example([Turn(BOT, other_text, None, [span(other_text, "Hello", "song"),
                                                  span(other_text, "Adele", "artist")]),
                     Turn(USER, "thanks")], "thanks")
    pool = value_pool([music_example(), other])
    assert set(pool) == {"song", "artist"}
    # "believer" and "Believer" are one value, spelled as first seen; lists are sorted
    assert pool["song"] == ["Hello", "believer"]
    assert pool["artist"] == ["Adele", "Imagine Dragons"]


def test_value_pool_of_nothing_is_empty():
    assert value_pool([]) == {}
    assert value_pool([Example([Turn(USER, "hi")], "hi")]) == {}
