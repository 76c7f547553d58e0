"""Tests of cqr_rasa.rewriter (and, through it, training and decoding) on a tiny music domain.

One small model is trained per module on hand-written dialogues and must then resolve "their"
to an artist it never saw, copying a multi-word name token by token.
"""
import ast
import copy
import dataclasses
import json
import math
import shutil
from pathlib import Path

import pytest
import torch

import cqr_rasa
from cqr_rasa import cli
from cqr_rasa.dialogue import BOT, USER, EntitySpan, Example, Turn
from cqr_rasa.features import BOS_ID, PAD_ID
from cqr_rasa.model import NetworkConfig, PointerGenerator
from cqr_rasa.rewriter import (
    CONFIG_FILE,
    FORMAT_VERSION,
    WEIGHTS_FILE,
    ModelFileError,
    Rewriter,
    RewriterConfig,
    _dropped_own_words,
    droppable_words,
)
from cqr_rasa.training import TrainConfig, train

# Few names end in "s": for a name it has never seen the model cannot tell "'s" from "'".
ARTISTS = ["Imagine Dragons", "Coldplay", "Adele", "The Killers", "Daft Punk", "Radiohead",
           "Kings of Leon", "Lana Del Rey", "Pearl Jam", "Sia", "Tame Impala", "Royal Blood",
           "Florence Welch", "Lorde", "Vampire Weekend", "Green Day", "Led Zeppelin", "Eminem",
           "Massive Attack", "Kate Bush"]
SONGS = ["Believer", "Yellow", "Hello", "Mr Brightside", "Get Lucky", "Creep", "Use Somebody",
         "Video Games", "Alive", "Chandelier", "Elephant", "Figure It Out", "Dog Days", "Royals",
         "Harmony Hall", "Basket Case", "Kashmir", "Lose Yourself", "Teardrop", "Running Up"]
ASK = "play their latest album"


def entity(text, phrase, name):
    start = text.index(phrase)
    return EntitySpan(start, start + len(phrase), name)


def possessive(artist):
    return artist + ("'" if artist.endswith("s") else "'s")


def dialogue(song, artist, last=ASK):
    question = f"who sings {song.lower()}"
    answer = f"'{song}' is by {artist}"
    return [Turn(USER, question, None, [entity(question, song.lower(), "song")]),
            Turn(BOT, answer, None, [entity(answer, song, "song"),
                                     entity(answer, artist, "artist")]),
            Turn(USER, last)]


def training_examples():
    examples = []
    for i, (song, artist) in enumerate(zip(SONGS, ARTISTS)):
        examples.append(Example(dialogue(song, artist), f"play {possessive(artist)} latest album",
                                id=f"album-{i}"))
        if i % 3 == 0:
            examples.append(Example(dialogue(song, artist, "thanks"), "thanks", id=f"thanks-{i}"))
    return examples


def train_config(epochs):
    return TrainConfig(epochs=epochs, batch_size=8, learning_rate=5e-3, seed=0,
                       validation_fraction=0.0, patience=epochs, swapped_copies=0,
                       hidden=64, word_dim=32, dropout=0.0, word_dropout=0.0)


UNSEEN = dialogue("Moonglade", "Zorblax Quintet")
PROBES = [
    UNSEEN,
    dialogue("Moonglade", "Zorblax Quintet", "thanks"),
    dialogue("Orbit", "Vexlor"),
    dialogue("Yellow", "Coldplay"),
    dialogue("Creep", "Radiohead", "thanks"),
    [Turn(BOT, "hi, what would you like to hear?"), Turn(USER, "something relaxing")],
]


@pytest.fixture(scope="module")
def rewriter():
    return train(training_examples(), train_config(40), progress=False)


@pytest.fixture(scope="module")
def saved(rewriter, tmp_path_factory):
    return rewriter.save(tmp_path_factory.mktemp("rewriter"))


@pytest.fixture
def model_copy(saved, tmp_path):
    """A fresh copy of the saved directory that a test may damage."""
    return Path(shutil.copytree(saved, tmp_path / "model"))


# --- training: the model learned the task ----------------------------------------------------

def test_rewrites_an_unseen_multiword_artist(rewriter):
    result = rewriter.rewrite(UNSEEN)
    assert result.text == "play Zorblax Quintet's latest album"
    assert result.changed
    assert 0.5 < result.confidence <= 1.0
    assert result.rewrite_probability > 0.5


def test_rewrites_another_unseen_artist(rewriter):
    assert rewriter.rewrite(dialogue("Orbit", "Vexlor")).text == "play Vexlor's latest album"


@pytest.mark.parametrize("artist", ["Duran Duran", "Talk Talk"])
def test_copies_a_name_that_repeats_a_word(rewriter, artist):
    # a word never follows itself in a rewrite unless the dialogue has it twice in a row
    assert rewriter.rewrite(dialogue("Rio", artist)).text == f"play {artist}'s latest album"


def test_reproduces_a_training_rewrite_with_an_apostrophe_only(rewriter):
    assert (rewriter.rewrite(dialogue("Believer", "Imagine Dragons")).text
            == "play Imagine Dragons' latest album")


def test_copy_types_keep_other_entity_types_from_being_copied(rewriter):
    banned = rewriter.rewrite(UNSEEN, copy_types={"song"})
    assert "Zorblax" not in banned.text and "Quintet" not in banned.text
    assert rewriter.rewrite(UNSEEN, copy_types={"artist"}) == rewriter.rewrite(UNSEEN)
    # a type the network never saw is not restricted: it cannot tell such spans apart
    question, answer = "who sings moonglade", "'Moonglade' is by Zorblax Quintet"
    unseen_type = [Turn(USER, question, None, [entity(question, "moonglade", "song")]),
                   Turn(BOT, answer, None, [entity(answer, "Moonglade", "song"),
                                            entity(answer, "Zorblax Quintet", "band")]),
                   Turn(USER, ASK)]
    assert (rewriter.rewrite(unseen_type, copy_types={"song"}).text
            == rewriter.rewrite(unseen_type).text == "play Zorblax Quintet's latest album")
    # a batch and one dialogue: the same to rounding
    batch = rewriter.rewrite_batch([UNSEEN, UNSEEN], [{"song"}, None])
    for got, single in zip(batch, [banned, rewriter.rewrite(UNSEEN)]):
        assert dataclasses.replace(got, confidence=0) == dataclasses.replace(single, confidence=0)
        assert got.confidence == pytest.approx(single.confidence, rel=1e-5)


def test_leaves_a_complete_utterance_unchanged(rewriter):
    result = rewriter.rewrite(dialogue("Moonglade", "Zorblax Quintet", "thanks"))
    assert result.text == "thanks"
    assert not result.changed
    assert result.rewrite_probability < 0.5
    assert result.confidence == pytest.approx(1.0 - result.rewrite_probability)
    assert result.sources == {}


def test_training_is_deterministic():
    config = dataclasses.replace(train_config(2), word_dropout=0.1)  # random draws included
    first = train(training_examples(), config, progress=False)
    second = train(training_examples(), config, progress=False)
    assert first.features.to_dict() == second.features.to_dict()
    a, b = first.network.state_dict(), second.network.state_dict()
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


@pytest.mark.parametrize("value", [-0.1, 1.0])
def test_word_dropout_must_be_a_share_below_one(value):
    with pytest.raises(ValueError, match="word_dropout"):
        TrainConfig(word_dropout=value)


def test_the_moving_average_of_the_weights_is_what_training_keeps():
    def weights(**changes):
        config = dataclasses.replace(train_config(1), validation_fraction=0.25, **changes)
        return torch.cat([p.flatten() for p in train(training_examples(), config,
                                                     progress=False).network.parameters()])

    initial = weights(learning_rate=0.0)
    trained = weights(ema_decay=0.0)
    # an average that barely moves keeps the initial weights; a plain run moved them
    assert torch.allclose(weights(ema_decay=1 - 1e-7), initial, atol=1e-5)
    assert not torch.allclose(trained, initial, atol=1e-3)
    averaged = weights(ema_decay=0.5)
    assert not torch.allclose(averaged, initial, atol=1e-3)
    assert not torch.equal(averaged, trained)


# --- save / load -----------------------------------------------------------------------------

def test_save_writes_the_two_files(saved):
    assert sorted(p.name for p in saved.iterdir()) == sorted([CONFIG_FILE, WEIGHTS_FILE])
    meta = json.loads((saved / CONFIG_FILE).read_text(encoding="utf-8"))
    assert meta["format_version"] == FORMAT_VERSION
    assert len(meta["weights_sha256"]) == 64


def test_save_load_round_trip_gives_identical_rewrites(rewriter, saved):
    loaded = Rewriter.load(saved)
    assert loaded.config == rewriter.config
    assert loaded.droppable == rewriter.droppable
    assert loaded.features.to_dict() == rewriter.features.to_dict()
    for expected, got in zip(rewriter.rewrite_batch(PROBES), loaded.rewrite_batch(PROBES)):
        assert got.text == expected.text
        assert got.confidence == pytest.approx(expected.confidence, rel=1e-6, abs=1e-9)
        assert got.changed == expected.changed
        assert got.sources == expected.sources


def test_load_applies_overrides(saved):
    loaded = Rewriter.load(saved, beam_size=3, rewrite_threshold=0.9, unknown_setting=1)
    assert (loaded.config.beam_size, loaded.config.rewrite_threshold) == (3, 0.9)
    assert loaded.config.max_history_turns == RewriterConfig().max_history_turns


def expect_error(directory, named):
    with pytest.raises(ModelFileError) as error:
        Rewriter.load(directory)
    assert str(directory / named) in str(error.value)
    return str(error.value)


@pytest.mark.parametrize("missing", [CONFIG_FILE, WEIGHTS_FILE])
def test_load_missing_file(model_copy, missing):
    (model_copy / missing).unlink()
    assert "missing" in expect_error(model_copy, missing)


def test_load_missing_directory(tmp_path):
    with pytest.raises(ModelFileError, match="missing"):
        Rewriter.load(tmp_path / "nowhere")


def test_load_truncated_weights(model_copy):
    weights = model_copy / WEIGHTS_FILE
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    expect_error(model_copy, WEIGHTS_FILE)


def test_load_tampered_weights(model_copy):
    weights = model_copy / WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[len(data) - 10] ^= 0x01  # one bit of one float, far from the header
    weights.write_bytes(bytes(data))
    expect_error(model_copy, WEIGHTS_FILE)


def test_load_broken_weights_with_a_matching_checksum(model_copy):
    """Corruption that the checksum cannot catch still ends in ModelFileError, not a crash."""
    import hashlib

    weights, config = model_copy / WEIGHTS_FILE, model_copy / CONFIG_FILE
    weights.write_bytes(weights.read_bytes()[:100])
    meta = json.loads(config.read_text(encoding="utf-8"))
    meta["weights_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    config.write_text(json.dumps(meta), encoding="utf-8")
    expect_error(model_copy, WEIGHTS_FILE)


@pytest.mark.parametrize("version", [FORMAT_VERSION + 1, 0, "1", None])
def test_load_wrong_format_version(model_copy, version):
    config = model_copy / CONFIG_FILE
    meta = json.loads(config.read_text(encoding="utf-8"))
    meta["format_version"] = version
    config.write_text(json.dumps(meta), encoding="utf-8")
    assert "format_version" in expect_error(model_copy, CONFIG_FILE)


def test_a_model_saved_without_droppable_words_loads_without_them(model_copy):
    config = model_copy / CONFIG_FILE
    meta = json.loads(config.read_text(encoding="utf-8"))
    del meta["droppable_words"]
    config.write_text(json.dumps(meta), encoding="utf-8")
    assert Rewriter.load(model_copy).droppable is None


@pytest.mark.parametrize("damage", ["not json", "no network", "bad beam", "wrong shape",
                                    "bad droppable"])
def test_load_invalid_config(model_copy, damage):
    config = model_copy / CONFIG_FILE
    meta = json.loads(config.read_text(encoding="utf-8"))
    if damage == "not json":
        config.write_text(config.read_text(encoding="utf-8")[:-20], encoding="utf-8")
        expect_error(model_copy, CONFIG_FILE)
        return
    if damage == "no network":
        del meta["network"]
    elif damage == "bad beam":
        meta["rewriter"]["beam_size"] = 0
    elif damage == "bad droppable":
        meta["droppable_words"] = ["their", 3]
    else:  # the weights no longer fit the declared sizes
        meta["network"]["hidden"] += 1
    config.write_text(json.dumps(meta), encoding="utf-8")
    named = WEIGHTS_FILE if damage == "wrong shape" else CONFIG_FILE
    expect_error(model_copy, named)


# --- run-time behaviour ----------------------------------------------------------------------

def test_single_turn_is_returned_unchanged(rewriter):
    text = "play their latest album"
    result = rewriter.rewrite([Turn(USER, text)])
    assert (result.text, result.changed, result.confidence) == (text, False, 1.0)
    assert rewriter.rewrite([]).text == ""


def test_history_window_of_zero_turns_means_no_rewrite(saved):
    result = Rewriter.load(saved, max_history_turns=0).rewrite(UNSEEN)
    assert (result.text, result.changed) == (ASK, False)


def test_threshold_of_one_never_rewrites(saved):
    result = Rewriter.load(saved, rewrite_threshold=1.0).rewrite(UNSEEN)
    assert (result.text, result.changed) == (ASK, False)


def test_rewrite_batch_equals_single_rewrites(rewriter):
    batched = rewriter.rewrite_batch(PROBES)
    assert len(batched) == len(PROBES)
    for turns, got in zip(PROBES, batched):
        single = rewriter.rewrite(turns)
        assert got.text == single.text
        assert got.changed == single.changed
        assert got.confidence == pytest.approx(single.confidence, rel=1e-5)
        assert got.sources == single.sources


# a first turn long enough that the dialogue needs a longer program than the others
LONG = [Turn(BOT, "hi! I can play any song, album or playlist you like, tell you who sings a "
                  "song or what is new this week, and show you what your friends are listening "
                  "to right now, or what they liked best last month; just ask me.")] + UNSEEN


@pytest.mark.parametrize("max_len", [64, 3])
def test_one_dialogue_is_rewritten_by_the_compiled_program_as_numpy_would(rewriter, max_len):
    """The compiled (XLA) program, which `rewrite` uses for one dialogue, encodes it and
    decodes greedily as `Engine` and numpy do, whether the rewrite ends or reaches the length
    limit."""
    from cqr_rasa.model import greedy
    from cqr_rasa.model.compiled import CompiledGreedy
    from cqr_rasa.model.decoding import doubled_ids

    compiled, engine = CompiledGreedy(rewriter.engine, max_len), rewriter.engine
    config, cut = rewriter.config, 0
    for turns in PROBES + [LONG]:
        source = rewriter.features.encode_source(rewriter.window(turns)[0])
        encoding, p_rewrite = engine.encode([source])
        prepared, state = engine.prepare(encoding)
        found = compiled.rewrite(source, [], config.rewrite_threshold, config.no_repeat_ngram,
                                 config.max_ngram_count)
        assert found.p_rewrite == pytest.approx(p_rewrite[0], abs=1e-5)
        if found.p_rewrite < config.rewrite_threshold:
            assert found.hypothesis is None
            continue
        mine = found.hypothesis
        theirs = greedy(engine, prepared, state, max_len, config.no_repeat_ngram,
                        config.max_ngram_count, [doubled_ids(source)])[0]
        assert mine.ids == theirs.ids and mine.copied == theirs.copied
        assert mine.logps == pytest.approx(theirs.logps, abs=1e-4)
        for a, b in zip(mine.attention, theirs.attention):
            assert a.tolist() == pytest.approx(b.tolist(), abs=1e-5)
        # EOS has a log-probability when the rewrite ended
        cut += len(mine.logps) == len(mine.ids) == max_len
    assert bool(cut) == (max_len == 3)


def test_a_single_dialogue_is_rewritten_by_the_compiled_program(saved):
    """`rewrite` encodes and decodes one dialogue with the compiled program for its padded
    length, `rewrite_batch` in numpy; the rewrites agree."""
    fresh = Rewriter.load(saved)
    fresh.rewrite_batch([LONG])
    # a batch (even of one): numpy; TensorFlow not even imported
    assert fresh._compiled is None
    fresh.rewrite(UNSEEN)
    assert list(fresh.compiled._programs) == [32]
    source = fresh.features.encode_source(fresh.window(LONG)[0])
    assert 64 < len(source.words) <= 96
    assert fresh.rewrite(LONG).text == "play Zorblax Quintet's latest album"
    assert list(fresh.compiled._programs) == [32, 96]  # one program per padded length
    # and positions of a type not to copy are left out by the program as by numpy
    for turns in (UNSEEN, LONG):
        for types in (None, {"artist"}, {"song"}):
            single = fresh.rewrite(turns, copy_types=types)
            batched = fresh.rewrite_batch([turns], [types])[0]
            assert (dataclasses.replace(single, confidence=0)
                    == dataclasses.replace(batched, confidence=0))
            assert single.confidence == pytest.approx(batched.confidence, rel=1e-5)
        assert "Zorblax" not in single.text
    assert list(fresh.compiled._programs) == [32, 96]


def test_beam_search(saved, rewriter):
    beam = Rewriter.load(saved, beam_size=3)
    assert beam.config.beam_size == 3
    results = beam.rewrite_batch(PROBES)
    for turns, result in zip(PROBES, results):
        assert result.text.strip()
    assert results[0].text == rewriter.rewrite(UNSEEN).text
    assert results[1].text == "thanks"


def test_eos_penalty_lets_beam_search_write_longer_rewrites(saved):
    plain = Rewriter.load(saved, beam_size=3).rewrite(UNSEEN)
    longer = Rewriter.load(saved, beam_size=3, eos_penalty=50.0).rewrite(UNSEEN)
    assert plain.text == "play Zorblax Quintet's latest album"
    assert len(longer.tokens) > len(plain.tokens)
    # the penalty ranks hypotheses; the confidence still comes from the network's probabilities
    assert 0.0 < longer.confidence < plain.confidence <= 1.0
    same = Rewriter.load(saved, beam_size=3, eos_penalty=1e-3).rewrite(UNSEEN)
    assert same.text == plain.text
    assert same.confidence == pytest.approx(plain.confidence, rel=1e-6)


def test_an_utterance_written_back_unchanged_gets_a_search_for_an_insertion(rewriter):
    # "thanks" needs nothing; forced to decode, greedy writes it back, and the insertion search
    # (here with any P(rewrite needed) and any score) must keep it and add a context word
    turns = dialogue("Moonglade", "Zorblax Quintet", "thanks")
    forced = {"rewrite_threshold": 0.0, "insert_threshold": 0.0}
    result = Rewriter(rewriter.features, rewriter.network,
                      RewriterConfig(**forced, insert_margin=100.0)).rewrite(turns)
    assert result.changed and "thanks" in result.tokens
    inserted = {k: w for k, w in enumerate(result.tokens) if w != "thanks"}
    assert inserted and set(result.sources) == set(inserted)
    for k, word in inserted.items():
        assert word in turns[result.sources[k]].text
    # within the margin only: no insertion scores as well as the utterance itself
    for config in (RewriterConfig(**forced, insert_margin=0.0),
                   RewriterConfig(rewrite_threshold=0.0, insert_threshold=1.0,
                                  insert_margin=100.0)):
        unchanged = Rewriter(rewriter.features, rewriter.network, config).rewrite(turns)
        assert (unchanged.text, unchanged.changed) == ("thanks", False)


@pytest.mark.parametrize("key, value", [
    ("insert_threshold", 1.5), ("insert_threshold", -0.1), ("insert_threshold", "0.99"),
    ("insert_margin", -1.0), ("insert_margin", "0.3"), ("rewrite_threshold", "0.5"),
    ("rewrite_threshold", float("nan"))])
def test_thresholds_and_margin_are_checked(key, value):
    with pytest.raises(ValueError, match=key):
        RewriterConfig(**{key: value})


@pytest.mark.parametrize("value", [-0.5, float("nan"), "3", True])
def test_eos_penalty_must_be_a_number_not_below_zero(value):
    with pytest.raises(ValueError, match="eos_penalty"):
        RewriterConfig(eos_penalty=value)


def test_cli_evaluate_and_benchmark_take_decoding_settings(saved, tmp_path, capsys):
    data = tmp_path / "probes.jsonl"
    data.write_text("\n".join(json.dumps({
        "turns": [{"speaker": t.speaker, "text": t.text} for t in turns],
        "rewrite": "play Zorblax Quintet's latest album" if turns is UNSEEN else turns[-1].text})
        for turns in PROBES), encoding="utf-8")
    settings = ["--beam-size", "3", "--eos-penalty", "1.5"]
    assert cli.main(["evaluate", "--model", str(saved), "--data", str(data),
                     "--json", str(tmp_path / "eval.json")] + settings) == 0
    report = json.loads((tmp_path / "eval.json").read_text())
    expected = {**RewriterConfig().decoding(), "beam_size": 3, "eos_penalty": 1.5}
    assert report["decoding"] == expected
    assert report["n"] == len(PROBES)
    assert cli.main(["benchmark", "--model", str(saved), "--repeats", "3",
                     "--json", str(tmp_path / "bench.json")] + settings) == 0
    bench = json.loads((tmp_path / "bench.json").read_text())
    assert bench["decoding"] == expected
    assert bench["rewriter"]["p50_ms"] > 0 and bench["t5_small"]["p50_ms"] > 0
    assert cli.main(["evaluate", "--model", str(saved), "--data", str(data),
                     "--eos-penalty", "-1"]) == 2
    assert "`eos_penalty` must be a number >= 0, got -1.0." in capsys.readouterr().err


def test_sources_point_at_the_turn_the_artist_came_from(saved):
    # two earlier turns fall outside a two-turn history window: indexes must still be global
    turns = [Turn(USER, "hello there"), Turn(BOT, "hi, what would you like to hear?")] + UNSEEN
    result = Rewriter.load(saved, max_history_turns=2).rewrite(turns)
    assert result.changed
    assert result.tokens[:3] == ["play", "Zorblax", "Quintet"]
    assert result.sources[1] == result.sources[2] == 3  # the bot turn naming the artist
    # only words absent from the utterance are listed, each with an existing turn or None
    utterance = {w.lower() for w in ASK.split()}
    assert result.sources
    for index, turn in result.sources.items():
        assert result.tokens[index].lower() not in utterance
        assert turn is None or 0 <= turn < len(turns) - 1


def test_a_rewrite_drops_only_words_the_training_rewrites_dropped(rewriter):
    # the training rewrites leave out "their" ("play Coldplay's latest album") and nothing else
    assert rewriter.droppable == {"their"}
    turns = UNSEEN[:-1] + [Turn(USER, "please play their latest album \U0001F3B8 schön")]
    source = rewriter.features.encode_source(turns)
    complete = ["please", "play", "Zorblax", "Quintet", "'", "latest", "album", "\U0001F3B8",
                "schön"]

    def drops(words, droppable=rewriter.droppable):
        return _dropped_own_words(source, rewriter.features, words, droppable)

    assert not drops(complete)  # without "their"
    for lost in ("play", "latest", "schön", "\U0001F3B8"):
        assert drops([w for w in complete if w != lost]) == [lost]
    assert not drops(complete[1:])  # "please": a stop word
    # a model saved without the list keeps only words in characters it never learned from
    assert not drops(["play", "\U0001F3B8", "schön"], None)
    assert drops(["play", "latest", "album", "schön"], None)
    result = rewriter.rewrite(turns)
    assert "\U0001F3B8" in result.text and "schön" in result.text
    assert result.changed or result.dropped  # refused rewrites say what they left out
    # ASCII punctuation may always go
    asked = rewriter.features.encode_source(UNSEEN[:-1] + [Turn(USER, "play their album?!")])
    assert not _dropped_own_words(asked, rewriter.features, ["play", "Zorblax", "Quintet", "'",
                                                             "album"], rewriter.droppable)


@pytest.mark.parametrize("text", ["\u0634\u063a\u0644 \u0623\u0644\u0628\u0648\u0645\u0647\u0645",
                                  "\u64ad\u653e\u4ed6\u4eec\u7684\u6700\u65b0\u4e13\u8f91",
                                  "\U0001F3B8\U0001F525"])
def test_an_utterance_wholly_in_unknown_characters_is_left_alone(rewriter, text):
    result = rewriter.rewrite(UNSEEN[:-1] + [Turn(USER, text)])
    assert (result.text, result.changed, result.confidence) == (text, False, 1.0)


def test_droppable_words_come_from_every_target(rewriter):
    question = "who sings yellow"
    example = Example([Turn(USER, question), Turn(BOT, "'Yellow' is by Coldplay"),
                       Turn(USER, "ok play it there")], "play Yellow by Coldplay",
                      alternatives=["ok play Yellow by Coldplay here"])
    assert droppable_words([example], rewriter.features) == {"ok", "it", "there"}


def test_utterance_with_control_characters_is_cleaned(rewriter):
    turns = UNSEEN[:-1] + [Turn(USER, "play their\x00 latest\x07 album")]
    assert rewriter.rewrite(turns).text == "play Zorblax Quintet's latest album"
    thanks = rewriter.rewrite(UNSEEN[:-1] + [Turn(USER, "thanks\x00")])
    assert thanks.text == "thanks"


ODD_INPUTS = [
    UNSEEN,
    dialogue("Moonglade", "Zorblax Quintet", "?"),
    dialogue("Moonglade", "Zorblax Quintet", "play"),
    [Turn(BOT, "x"), Turn(USER, "y")],
    [Turn(USER, "qwerty asdf"), Turn(BOT, "'' \" ' ."), Turn(USER, "zxcv uiop hjkl")],
    [Turn(BOT, "ok " * 40), Turn(USER, "play it play it play it")],
]


@pytest.mark.parametrize("beam_size", [1, 3])
def test_never_returns_empty_text_for_non_empty_input(rewriter, beam_size):
    forced = Rewriter(rewriter.features, rewriter.network,
                      RewriterConfig(rewrite_threshold=0.0, beam_size=beam_size))
    torch.manual_seed(3)
    untrained = PointerGenerator(NetworkConfig(**{**rewriter.network.config.to_dict(),
                                                  "hidden": 16, "word_dim": 8}))
    random_model = Rewriter(rewriter.features, untrained,
                            RewriterConfig(rewrite_threshold=0.0, beam_size=beam_size))
    for model in (forced, random_model):
        for turns, result in zip(ODD_INPUTS, model.rewrite_batch(ODD_INPUTS)):
            assert result.text.strip(), turns[-1].text
            assert math.isfinite(result.confidence) and 0.0 <= result.confidence <= 1.0


@pytest.mark.parametrize("beam_size", [1, 3])
def test_never_emits_special_tokens(rewriter, beam_size):
    network = copy.deepcopy(rewriter.network)
    with torch.no_grad():  # a network that (wrongly) likes padding and BOS
        network.out[-1].bias[PAD_ID] += 30.0
        network.out[-1].bias[BOS_ID] += 29.0
        network.switch.bias += 30.0
    model = Rewriter(rewriter.features, network,
                     RewriterConfig(rewrite_threshold=0.0, beam_size=beam_size))
    for result in model.rewrite_batch(PROBES):
        assert "<pad>" not in result.text and "<s>" not in result.text, result.text


# --- no pickle anywhere ----------------------------------------------------------------------

UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve",
                  "marshal"}


def unsafe_loading(source: str):
    """Names of pickle-based loading found in Python source: modules, torch.load, np.load."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] in UNSAFE_MODULES]
        elif isinstance(node, ast.ImportFrom):
            if (node.module or "").split(".")[0] in UNSAFE_MODULES:
                found.append(node.module)
            found += [f"{node.module}.{a.name}" for a in node.names
                      if node.module in ("torch", "numpy") and a.name == "load"]
        elif isinstance(node, ast.Attribute) and node.attr == "load":
            owner = ast.unparse(node.value)
            if owner in ("torch", "np", "numpy", "torch.serialization"):
                found.append(f"{owner}.load")
        elif isinstance(node, ast.keyword) and node.arg == "allow_pickle":
            found.append("allow_pickle")
    return found


@pytest.mark.parametrize("snippet", [
    "import pickle", "from pickle import loads", "import torch\nstate = torch.load(path)",
    "import numpy as np\nnp.load(path, allow_pickle=True)", "from torch import load",
    "import joblib", "x = numpy.load(p)",
])
def test_unsafe_loading_scanner_finds_pickle(snippet):
    assert unsafe_loading(snippet)


def test_package_never_unpickles():
    root = Path(cqr_rasa.__file__).resolve().parent
    files = sorted(root.rglob("*.py"))
    assert root / "rewriter.py" in files
    offenders = {str(p.relative_to(root)): found for p in files
                 if (found := unsafe_loading(p.read_text(encoding="utf-8")))}
    assert offenders == {}
