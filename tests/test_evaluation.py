"""Tests of cqr_rasa.evaluation on tiny hand-written dialogues."""
import json

import pytest

from cqr_rasa.dialogue import BOT, USER, EntitySpan, Example, Turn
from cqr_rasa.evaluation import (
    EARLIER_USER_TURN,
    LAST_BOT_TURN,
    OTHER,
    contains,
    evaluate,
    evaluate_systems,
    format_table,
    heuristic,
    identity,
    normalize,
    per_example,
    value_source,
)

pytest.importorskip("sacrebleu")


def span(text, phrase, entity, value=None):
    start = text.index(phrase)
    return EntitySpan(start, start + len(phrase), entity, value)


def music_example():
    bot = "'Believer' is by Imagine Dragons"
    return Example(
        turns=[
            Turn(USER, "who sings believer", entities=[span("who sings believer", "believer", "song")]),
            Turn(BOT, bot, entities=[span(bot, "Imagine Dragons", "artist")]),
            Turn(USER, "play their latest album"),
        ],
        rewrite="play Imagine Dragons' latest album",
        id="music",
        gold_values=["Imagine Dragons"],
        category=["pronoun"],
    )


def navigation_example():
    user = "find a starbucks near me"
    bot = "Starbucks on Main Street is 2 miles away"
    return Example(
        turns=[
            Turn(USER, user, entities=[span(user, "starbucks", "poi_type")]),
            Turn(BOT, bot, entities=[span(bot, "Starbucks on Main Street", "poi"),
                                     span(bot, "2 miles", "distance")]),
            Turn(USER, "take me there"),
        ],
        rewrite="take me to Starbucks on Main Street",
        id="nav",
        gold_values=["Starbucks on Main Street"],
        category=["locative"],
    )


def weather_example():
    """A value from an earlier user turn (ellipsis)."""
    return Example(
        turns=[
            Turn(USER, "what is the weather in Boston",
                 entities=[span("what is the weather in Boston", "Boston", "city")]),
            Turn(BOT, "It is sunny and 20 degrees"),
            Turn(USER, "what about tomorrow"),
        ],
        rewrite="what about tomorrow in Boston",
        id="weather",
        gold_values=["Boston"],
        category=["ellipsis"],
    )


def self_contained_example():
    return Example(
        turns=[
            Turn(USER, "hi"),
            Turn(BOT, "hello, how can I help?"),
            Turn(USER, "set an alarm for 7 am"),
        ],
        rewrite="set an alarm for 7 am",
        id="plain",
        category=["none"],
    )


def examples():
    return [music_example(), navigation_example(), weather_example(), self_contained_example()]


def refs(exs):
    return [e.rewrite for e in exs]


# ------------------------------------------------------------------ normalisation


def test_normalize_keeps_inner_apostrophes_hyphens_and_decimals():
    assert normalize("  Don't   STOP-believing, it's 3.5 miles!  ") == \
        "don't stop-believing it's 3.5 miles"
    assert normalize("Imagine Dragons'") == "imagine dragons"
    assert normalize("\uff21\uff22\uff23") == "abc"  # fullwidth letters, NFKC


def test_contains_respects_token_boundaries():
    assert contains("play Imagine Dragons' album", "imagine dragons")
    assert not contains("the pizzas are here", "pizza")
    assert not contains("anything", "")


# ------------------------------------------------------------------ metrics


def test_identity_scores_zero_on_carried_over_slots():
    exs = examples()
    m = evaluate(exs, [identity(e) for e in exs])
    assert m["n"] == 4
    assert m["exact_match"] == 0.25  # only the self-contained example
    rewrite_only = [e for e in exs if e.needs_rewrite]
    assert evaluate(rewrite_only, [identity(e) for e in rewrite_only])["exact_match"] == 0.0
    assert m["slot_precision"] == 0.0
    assert m["slot_recall"] == 0.0
    assert m["slot_f1"] == 0.0
    assert m["no_harm"] == 1.0
    assert m["bleu"] < 100


def test_perfect_system():
    exs = examples()
    m = evaluate(exs, refs(exs))
    assert m["bleu"] == 100.0
    assert m["exact_match"] == 1.0
    assert m["slot_precision"] == 1.0
    assert m["slot_recall"] == 1.0
    assert m["slot_f1"] == 1.0
    assert m["no_harm"] == 1.0


def test_exact_match_ignores_whitespace_only():
    ex = music_example()
    assert evaluate([ex], ["  play Imagine   Dragons' latest album "])["exact_match"] == 1.0
    assert evaluate([ex], ["play imagine dragons' latest album"])["exact_match"] == 0.0


def test_candidate_inside_a_longer_mention_is_not_counted():
    # "starbucks" (a poi_type of the first turn) only occurs inside the gold poi.
    ex = navigation_example()
    m = evaluate([ex], [ex.rewrite])
    assert m["slot_precision"] == 1.0
    m = evaluate([ex], ["take me to a starbucks, Starbucks on Main Street"])
    assert m["slot_precision"] == 0.5


def test_wrong_extra_entity_lowers_precision():
    ex = navigation_example()
    good = evaluate([ex], [ex.rewrite])
    bad = evaluate([ex], ["take me to Starbucks on Main Street 2 miles away"])
    assert good["slot_precision"] == 1.0
    assert bad["slot_precision"] == 0.5
    assert bad["slot_recall"] == 1.0
    assert bad["slot_f1"] == pytest.approx(0.6667, abs=1e-4)


def test_missing_value_lowers_recall_and_changing_a_plain_utterance_harms():
    exs = examples()
    preds = refs(exs)
    preds[2] = "what about tomorrow"
    preds[3] = "set an alarm for 7 am in Boston"
    m = evaluate(exs, preds)
    assert m["slot_recall"] == pytest.approx(2 / 3, abs=1e-4)
    assert m["no_harm"] == 0.0


def test_no_harm_is_none_without_self_contained_examples():
    ex = music_example()
    assert evaluate([ex], [ex.rewrite])["no_harm"] is None


def test_length_mismatch_raises():
    with pytest.raises(ValueError):
        evaluate(examples(), ["x"])


# ------------------------------------------------------------------ sources and subsets


def test_source_classification():
    assert value_source(music_example(), "Imagine Dragons") == LAST_BOT_TURN
    assert value_source(weather_example(), "Boston") == EARLIER_USER_TURN
    older_bot = Example(
        turns=[
            Turn(BOT, "the nearest pharmacy is CVS"),
            Turn(USER, "thanks"),
            Turn(BOT, "anything else?"),
            Turn(USER, "what time does it close"),
        ],
        rewrite="what time does CVS close",
        gold_values=["CVS"],
    )
    assert value_source(older_bot, "CVS") == OTHER
    assert value_source(older_bot, "Walgreens") == OTHER  # nowhere in the context


def test_by_source_subsets_and_answerable():
    exs = examples()
    preds = refs(exs)
    preds[2] = "what about tomorrow"  # misses the earlier-user-turn value
    m = evaluate(exs, preds)
    by_source = m["by_source"]
    assert set(by_source) == {LAST_BOT_TURN, EARLIER_USER_TURN, OTHER}
    assert by_source[LAST_BOT_TURN]["n"] == 2
    assert by_source[LAST_BOT_TURN]["slot_recall"] == 1.0
    assert by_source[EARLIER_USER_TURN]["n"] == 1
    assert by_source[EARLIER_USER_TURN]["slot_recall"] == 0.0
    assert by_source[OTHER]["n"] == 0
    assert by_source[OTHER]["bleu"] is None
    assert m["answerable"]["n"] == 3
    assert m["answerable"]["slot_recall"] == pytest.approx(2 / 3, abs=1e-4)
    for sub in list(by_source.values()) + [m["answerable"]]:
        assert "by_source" not in sub and "by_category" not in sub


def test_source_subset_counts_only_its_own_gold_values():
    user = "when is the Coldplay concert"
    bot = "it is on Friday at Wembley Stadium"
    ex = Example(
        turns=[
            Turn(USER, user, entities=[span(user, "Coldplay", "artist")]),
            Turn(BOT, bot, entities=[span(bot, "Friday", "date"),
                                     span(bot, "Wembley Stadium", "venue")]),
            Turn(USER, "how do I get there"),
        ],
        rewrite="how do I get to Wembley Stadium for the Coldplay concert",
        gold_values=["Wembley Stadium", "Coldplay"],
    )
    pred = "how do I get to Wembley Stadium for the Coldplay concert on Friday"
    m = evaluate([ex], [pred])
    # Overall: predicted {Wembley, Coldplay, Friday}, gold {Wembley, Coldplay}.
    assert m["slot_precision"] == pytest.approx(0.6667, abs=1e-4)
    bot_only = m["by_source"][LAST_BOT_TURN]
    user_only = m["by_source"][EARLIER_USER_TURN]
    # Coldplay is excluded from the last-bot-turn subset entirely, and vice versa.
    assert bot_only["slot_precision"] == 0.5 and bot_only["slot_recall"] == 1.0
    assert user_only["slot_precision"] == 0.5 and user_only["slot_recall"] == 1.0
    assert bot_only["n"] == user_only["n"] == 1


def test_unanswerable_example_is_left_out_of_answerable():
    ex = Example(
        turns=[Turn(USER, "book a table"), Turn(BOT, "done"), Turn(USER, "send it to mom")],
        rewrite="send the reservation at Nopa to mom",
        gold_values=["Nopa"],
    )
    m = evaluate([ex, music_example()], [ex.rewrite, music_example().rewrite])
    assert m["answerable"]["n"] == 1
    assert m["by_source"][OTHER]["n"] == 1


def test_by_category_keys():
    exs = examples()
    exs[0].category = ["pronoun", "ellipsis"]
    m = evaluate(exs, refs(exs))
    assert set(m["by_category"]) == {"pronoun", "locative", "ellipsis", "none"}
    assert m["by_category"]["ellipsis"]["n"] == 2
    assert m["by_category"]["none"]["no_harm"] == 1.0
    assert "by_category" not in m["by_category"]["pronoun"]


def test_output_is_json_serialisable_and_rounded():
    exs = examples()
    preds = refs(exs)
    preds[1] = "take me to Starbucks on Main Street 2 miles away"
    preds[2] = "what about tomorrow"
    report = evaluate_systems(exs, {
        "identity": per_example(identity),
        "heuristic": per_example(heuristic),
        "fixed": lambda batch: list(preds),
    })
    assert report["n"] == 4
    assert set(report["systems"]) == {"identity", "heuristic", "fixed"}
    json.loads(json.dumps(report))
    fixed = report["systems"]["fixed"]
    for key in ("exact_match", "slot_precision", "slot_recall", "slot_f1"):
        assert fixed[key] == round(fixed[key], 4)
    assert fixed["slot_f1"] != round(fixed["slot_f1"], 2)  # 4 decimals really kept
    assert fixed["bleu"] == round(fixed["bleu"], 2)
    assert fixed["bleu"] != round(fixed["bleu"], 1)  # 2 decimals really kept


def test_format_table_rows():
    exs = examples()
    report = evaluate_systems(exs, {"identity": per_example(identity),
                                    "oracle": lambda batch: refs(batch)})
    table = format_table(report)
    lines = table.splitlines()
    for name in ("identity", "oracle"):
        for suffix in ("", " / last_bot_turn", " / earlier_user_turn", " / other", " / answerable"):
            assert any(line.startswith(name + suffix + " ") for line in lines), name + suffix
    oracle = next(line for line in lines if line.split()[0] == "oracle" and line.split()[1] != "/")
    assert "100.00" in oracle
    widths = {len(line) for line in lines[1:]}
    assert len(widths) == 1  # fixed width


# ------------------------------------------------------------------ heuristic baseline


def test_heuristic_replaces_possessive_with_artist():
    assert heuristic(music_example()) == "play Imagine Dragons' latest album"


def test_heuristic_possessive_s_and_capitalisation():
    bot = "That song is by Adele"
    ex = Example(
        turns=[Turn(BOT, bot, entities=[span(bot, "Adele", "artist")]),
               Turn(USER, "What is his newest song?")],
        rewrite="What is Adele's newest song?",
    )
    assert heuristic(ex) == "What is Adele's newest song?"
    ex.turns[-1] = Turn(USER, "They are great, play them.")
    assert heuristic(ex) == "Adele are great, play Adele."


def test_heuristic_replaces_there_with_poi():
    # The most recent entity is a distance, but "there" needs a location.
    ex = navigation_example()
    assert heuristic(ex) == "take me to Starbucks on Main Street"
    assert evaluate([ex], [heuristic(ex)])["exact_match"] == 1.0
    ex.turns[-1] = Turn(USER, "is it busy there now?")
    assert heuristic(ex).endswith("busy at Starbucks on Main Street now?")
    city = weather_example()
    city.turns[-1] = Turn(USER, "and the traffic there")
    assert heuristic(city) == "and the traffic in Boston"
    city.turns[-1] = Turn(USER, "how long is the drive from there?")
    assert heuristic(city) == "how long is the drive from Boston?"


def test_heuristic_it_after_locative_verb_and_that_place():
    ex = navigation_example()
    ex.turns[-1] = Turn(USER, "how far is it from that place?")
    assert heuristic(ex) == "how far is Starbucks on Main Street from Starbucks on Main Street?"


def test_heuristic_it_takes_most_recent_entity_of_any_kind():
    ex = music_example()
    ex.turns[-1] = Turn(USER, "add it to my playlist")
    assert heuristic(ex) == "add Imagine Dragons to my playlist"
    ex.turns[-1] = Turn(USER, "play that song")  # determiner, not a pronoun
    assert heuristic(ex) == "play that song"


def test_heuristic_leaves_incompatible_and_non_pronoun_words():
    ex = weather_example()  # only a city entity in the context
    ex.turns[-1] = Turn(USER, "is there anything for them")
    assert heuristic(ex) == "is there anything for them"
    plain = self_contained_example()
    assert heuristic(plain) == plain.utterance.text
    m = evaluate([plain], [heuristic(plain)])
    assert m["no_harm"] == 1.0
