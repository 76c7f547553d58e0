"""Tests of cqr_rasa.features: tokenizing, detokenizing, entity roles and the id encodings."""
import json
from collections import Counter

import pytest
import torch

from cqr_rasa.dialogue import BOT, USER, EntitySpan, Turn
from cqr_rasa.features import (
    BIO_IDS,
    EOS_ID,
    MAX_ROLES,
    PAD_ID,
    ROLE_NAMES,
    SPECIALS,
    UNK_ID,
    FeatureSpace,
    Tokenizer,
    Vocab,
    clean_text,
    detokenize,
    entity_roles,
    glued_to_previous,
    make_batch,
)

SOURCE_COLUMNS = ("words", "turn_index", "word_ids", "speaker_ids", "intent_ids", "bio_ids",
                  "type_ids", "role_ids", "distance_ids", "ext_ids", "glued")


def span(text, phrase, entity, occurrence=0):
    """The EntitySpan of the `occurrence`-th appearance of `phrase` in `text`."""
    start = -1
    for _ in range(occurrence + 1):
        start = text.index(phrase, start + 1)
    return EntitySpan(start, start + len(phrase), entity)


def music_turns(last="play their latest album"):
    question = "who sings believer"
    answer = "'Believer' is by Imagine Dragons"
    return [
        Turn(USER, question, "ask_artist", [span(question, "believer", "song")]),
        Turn(BOT, answer, None, [span(answer, "Believer", "song"),
                                 span(answer, "Imagine Dragons", "artist")]),
        Turn(USER, last, "play_album"),
    ]


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer()


@pytest.fixture(scope="module")
def space():
    """Hand-made vocabularies, so every expected id is known."""
    words = Vocab(["<pad>", "<unk>", "who", "sings", "believer", "'", "is", "by", "play",
                   "their", "latest", "album", "imagine", "dragons"])
    gen = Vocab(list(SPECIALS) + ["play", "'s", "'", "latest", "album", "the"])
    intents = Vocab(["<pad>", "<unk>", "O", "ask_artist", "play_album"])
    types = Vocab(["<pad>", "<unk>", "O", "song", "artist"])
    return FeatureSpace(words, gen, intents, types)


# --- detokenize ------------------------------------------------------------------------------

@pytest.mark.parametrize("words, expected", [
    (["play", "Imagine", "Dragons", "'", "latest", "album"], "play Imagine Dragons' latest album"),
    (["what", "'s", "the", "weather", "?"], "what's the weather?"),
    (["'", "Believer", "'", "is", "by", "X"], "'Believer' is by X"),
    (["'", "Believer", "'", "is", "by", "Imagine", "Dragons"], "'Believer' is by Imagine Dragons"),
    (['"', "Believer", '"', "is", "by", "X"], '"Believer" is by X'),
    (["play", "Adele", "'s", "new", "song"], "play Adele's new song"),
    (["I", "do", "n't", "know", ",", "sorry", "!"], "I don't know, sorry!"),
    (["it", "costs", "$", "5", "(", "roughly", ")", "."], "it costs $5 (roughly)."),
    (["the", "Beatles", "'", "'", "Yesterday", "'"], "the Beatles' 'Yesterday'"),
    ([], ""),
])
def test_detokenize_reads_naturally(words, expected):
    assert detokenize(words) == expected


def test_detokenize_opening_quote_after_word_ending_in_s():
    assert detokenize(["the", "song", "is", "'", "Believer", "'"]) == "the song is 'Believer'"


@pytest.mark.parametrize("text", [
    "play Imagine Dragons' latest album",
    "what's the weather?",
    "'Believer' is by Imagine Dragons",
    "I don't know, sorry!",
])
def test_detokenize_inverts_the_tokenizer_on_plain_text(tokenizer, text):
    assert detokenize([t.text for t in tokenizer(text)]) == text


def test_detokenize_keeps_the_dialogue_spacing_of_glued_words():
    words = ["is", "it", "gon", "na", "snow", "at", "4", "pm", "?"]
    glued = [None, None, None, True, None, None, None, True, False]
    assert detokenize(words, glued) == "is it gonna snow at 4pm ?"
    assert detokenize(words) == "is it gon na snow at 4 pm?"  # without it, English rules only


@pytest.mark.parametrize("text", [
    "Wednesday, please. Is it gonna snow?",
    "a meeting at 4pm, later this week",
    "I need my morning coffee.. Please pick the shortest route!",
    "'Believer' is by Imagine Dragons' singer",
    "who is helping ?",
])
def test_detokenize_with_glued_inverts_the_tokenizer(tokenizer, text):
    tokens = tokenizer(text)
    assert detokenize([t.text for t in tokens], glued_to_previous(tokens)) == text


def test_detokenize_with_glued_inverts_the_tokenizer_on_the_dev_data(tokenizer, cqr_dev_path):
    from cqr_rasa.readers import read_examples

    texts = {" ".join(t.text.split()) for e in read_examples(cqr_dev_path, "full")
             for t in e.turns}
    tokenized = {text: tokenizer(text) for text in texts}
    wrong = [text for text, tokens in tokenized.items()
             if detokenize([t.text for t in tokens], glued_to_previous(tokens)) != text]
    assert len(texts) > 1000 and wrong == []


# --- Tokenizer -------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "play Imagine Dragons' latest album",
    "  what's   the\tweather in São Paulo?\n",
    "'Believer' is by Imagine Dragons, isn't it?",
    "navigate to 5671 barringer street ☕ now",
])
def test_tokenizer_offsets_map_back_to_the_text(tokenizer, text):
    tokens = tokenizer(text)
    assert tokens
    for token in tokens:
        assert text[token.start:token.end] == token.text
        assert token.text.strip() == token.text and token.text
    starts = [t.start for t in tokens]
    assert starts == sorted(starts)
    assert all(a.end <= b.start for a, b in zip(tokens, tokens[1:]))
    # nothing but whitespace is left out
    covered = "".join(text[t.start:t.end] for t in tokens)
    assert covered == "".join(text.split())


def test_tokenizer_splits_possessives_and_contractions(tokenizer):
    assert [t.text for t in tokenizer("Dragons' album")] == ["Dragons", "'", "album"]
    assert [t.text for t in tokenizer("Adele's album")] == ["Adele", "'s", "album"]


# --- entity roles ----------------------------------------------------------------------------

def test_entity_roles_number_values_per_speaker_in_order():
    roles = entity_roles(music_turns())
    assert roles[(USER, "believer")] == "ENTITYU1"
    assert roles[(BOT, "believer")] == "ENTITYS1"
    assert roles[(BOT, "imagine dragons")] == "ENTITYS2"
    assert len(roles) == 3


def test_entity_roles_follow_position_not_annotation_order():
    text = "'Believer' is by Imagine Dragons"
    turn = Turn(BOT, text, None, [span(text, "Imagine Dragons", "artist"),
                                  span(text, "Believer", "song")])
    roles = entity_roles([turn])
    assert roles[(BOT, "believer")] == "ENTITYS1"
    assert roles[(BOT, "imagine dragons")] == "ENTITYS2"


def test_repeated_value_keeps_its_class():
    first = "'Believer' is by Imagine Dragons"
    again = "imagine  DRAGONS also did Thunder"
    turns = [
        Turn(BOT, first, None, [span(first, "Believer", "song"),
                                span(first, "Imagine Dragons", "artist")]),
        Turn(USER, "and what else"),
        Turn(BOT, again, None, [span(again, "imagine  DRAGONS", "artist"),
                                span(again, "Thunder", "song")]),
    ]
    roles = entity_roles(turns)
    assert roles[(BOT, "imagine dragons")] == "ENTITYS2"
    # the repeat did not use up a class: the next new value is the third one
    assert roles[(BOT, "thunder")] == "ENTITYS3"


def test_entity_roles_share_the_last_class_beyond_the_maximum():
    names = [f"city{k}" for k in range(MAX_ROLES + 2)]
    text = " ".join(names)
    turn = Turn(USER, text, None, [span(text, n, "city") for n in names])
    roles = entity_roles([turn])
    assert [roles[(USER, n)] for n in names[:MAX_ROLES]] == [
        f"ENTITYU{k}" for k in range(1, MAX_ROLES + 1)]
    assert roles[(USER, names[-1])] == roles[(USER, names[-2])] == f"ENTITYU{MAX_ROLES}"


# --- encode_source ---------------------------------------------------------------------------

def test_encode_source_columns_have_one_entry_per_token(space):
    source = space.encode_source(music_turns())
    expected = ["who", "sings", "believer", "'", "Believer", "'", "is", "by", "Imagine",
                "Dragons", "play", "their", "latest", "album"]
    assert source.words == expected
    for name in SOURCE_COLUMNS:
        assert len(getattr(source, name)) == len(expected), name


def test_encode_source_marks_the_utterance_and_turn_features(space):
    source = space.encode_source(music_turns())
    assert source.utterance_start == 10
    assert source.words[source.utterance_start:] == ["play", "their", "latest", "album"]
    assert source.turn_index == [0] * 3 + [1] * 7 + [2] * 4
    assert source.distance_ids == [3] * 3 + [2] * 7 + [1] * 4
    assert source.speaker_ids == [1] * 3 + [2] * 7 + [1] * 4
    intents = space.intents
    assert source.intent_ids == ([intents.id("ask_artist")] * 3 + [intents.id("O")] * 7
                                 + [intents.id("play_album")] * 4)
    assert source.word_ids[8] == space.words.id("imagine")  # lowercased lookup
    assert source.word_ids[0] == space.words.id("who") != UNK_ID


def test_encode_source_tags_a_multiword_span(space):
    source = space.encode_source(music_turns())
    at = {w: i for i, w in enumerate(source.words)}
    i, j = at["Imagine"], at["Dragons"]
    assert (source.bio_ids[i], source.bio_ids[j]) == (BIO_IDS["B"], BIO_IDS["I"])
    assert source.type_ids[i] == source.type_ids[j] == space.types.id("artist")
    assert source.role_ids[i] == source.role_ids[j] == ROLE_NAMES.index("ENTITYS2")
    # the one-word song spans get B and their own roles
    assert source.bio_ids[2] == BIO_IDS["B"]
    assert source.role_ids[2] == ROLE_NAMES.index("ENTITYU1")
    assert source.role_ids[4] == ROLE_NAMES.index("ENTITYS1")
    # everything else is outside any span
    outside = [k for k in range(len(source.words)) if k not in (2, 4, i, j)]
    assert {source.bio_ids[k] for k in outside} == {BIO_IDS["O"]}
    assert {source.role_ids[k] for k in outside} == {ROLE_NAMES.index("O")}
    assert {source.type_ids[k] for k in outside} == {space.types.id("O")}


def test_encode_source_gives_oov_words_extended_ids(space):
    turns = music_turns("play Zorblax , yes zorblax and Qux")
    source = space.encode_source(turns)
    n_gen = len(space.gen)
    for word, ext in zip(source.words, source.ext_ids):
        if word.lower() in space.gen.stoi:
            assert ext == space.gen.stoi[word.lower()] < n_gen
        else:
            assert ext >= n_gen
            assert source.oov[ext - n_gen] == word.lower()
    # one OOV entry per distinct lowercased word, shared by both spellings
    assert len(source.oov) == len(set(source.oov))
    positions = [k for k, w in enumerate(source.words) if w.lower() == "zorblax"]
    assert len(positions) == 2
    assert source.ext_ids[positions[0]] == source.ext_ids[positions[1]]
    assert "qux" in source.oov and "Qux" not in source.oov


def test_truncation_drops_oldest_tokens_first(space):
    source = space.encode_source(music_turns())
    short = FeatureSpace(space.words, space.gen, space.intents, space.types,
                         max_source_tokens=6).encode_source(music_turns())
    assert short.words == source.words[-6:]
    assert short.utterance_start == 2
    assert short.turn_index == [1, 1, 2, 2, 2, 2]
    for name in SOURCE_COLUMNS:
        assert len(getattr(short, name)) == 6, name


@pytest.mark.parametrize("limit", [1, 3])
def test_truncation_never_cuts_the_utterance(space, limit):
    small = FeatureSpace(space.words, space.gen, space.intents, space.types,
                         max_source_tokens=limit)
    source = small.encode_source(music_turns())
    assert source.words == ["play", "their", "latest", "album"]
    assert source.utterance_start == 0
    assert source.turn_index == [2, 2, 2, 2]
    # OOV words are counted on what was kept
    assert "believer" not in source.oov
    assert source.oov == ["their"]


# --- encode_target ---------------------------------------------------------------------------

def test_encode_target_copies_and_generates(space):
    source = space.encode_source(music_turns())
    ids = space.encode_target("Play Imagine Dragons' latest album", source)
    n_gen = len(space.gen)
    assert ids == [space.gen.id("play"), n_gen + source.oov.index("imagine"),
                   n_gen + source.oov.index("dragons"), space.gen.id("'"),
                   space.gen.id("latest"), space.gen.id("album"), EOS_ID]


def test_encode_target_maps_uncopyable_rare_words_to_unk(space):
    source = space.encode_source(music_turns())
    ids = space.encode_target("play Metallica's latest album", source)
    assert ids == [space.gen.id("play"), UNK_ID, space.gen.id("'s"), space.gen.id("latest"),
                   space.gen.id("album"), EOS_ID]


def test_encode_target_truncates_and_still_ends_with_eos(space):
    source = space.encode_source(music_turns())
    limited = FeatureSpace(space.words, space.gen, space.intents, space.types,
                           max_target_tokens=4)
    ids = limited.encode_target("play the latest album now please", source)
    assert ids == [space.gen.id("play"), space.gen.id("the"), space.gen.id("latest"), EOS_ID]
    assert space.encode_target("", source) == [EOS_ID]


# --- building and serializing ----------------------------------------------------------------

def test_build_keeps_frequent_target_words_for_generation():
    turns = music_turns()
    data = [(turns, ["play Imagine Dragons' latest album", "play their latest album"]),
            (turns, ["play the latest album"])]
    space = FeatureSpace.build(data, word_min_count=2, gen_min_count=3)
    assert space.gen.itos[:4] == list(SPECIALS)
    for word in ("play", "latest", "album"):  # 3 times in the rewrites
        assert word in space.gen.stoi
    for word in ("imagine", "the", "their"):  # fewer than 3 times
        assert word not in space.gen.stoi
    # input words count over turns and rewrites; once-seen words are unknown
    assert space.words.id("believer") != UNK_ID
    assert space.words.id("dragons") != UNK_ID
    assert space.words.id("the") == UNK_ID
    assert space.types.id("artist") != UNK_ID and space.types.id("song") != UNK_ID
    assert space.intents.id("play_album") != UNK_ID


def test_vocab_build_orders_by_count_then_alphabet():
    vocab = Vocab.build(Counter({"b": 2, "a": 2, "c": 5, "d": 1}), 2, ("<pad>", "<unk>"))
    assert vocab.itos == ["<pad>", "<unk>", "c", "a", "b"]
    assert vocab.id("d") == UNK_ID and vocab.id("c") == 2


def test_to_dict_from_dict_round_trip(space):
    limited = FeatureSpace(space.words, space.gen, space.intents, space.types,
                           max_source_tokens=9, max_target_tokens=7)
    restored = FeatureSpace.from_dict(json.loads(json.dumps(limited.to_dict())))
    assert restored.to_dict() == limited.to_dict()
    assert (restored.max_source_tokens, restored.max_target_tokens) == (9, 7)
    turns = music_turns()
    assert restored.encode_source(turns) == limited.encode_source(turns)
    source = limited.encode_source(turns)
    text = "play Imagine Dragons' latest album"
    assert restored.encode_target(text, source) == limited.encode_target(text, source)


# --- make_batch ------------------------------------------------------------------------------

def test_make_batch_pads_and_masks(space):
    long = space.encode_source(music_turns())
    short = space.encode_source([Turn(BOT, "'Believer' is by Zorblax"), Turn(USER, "thanks")])
    targets = [space.encode_target("play Imagine Dragons' latest album", long),
               space.encode_target("thanks", short)]
    batch = make_batch([long, short], targets, [True, False])
    n, m = len(long.words), len(short.words)
    assert batch.features.shape == (2, n, 7)
    assert batch.source_mask[0].all()
    assert batch.source_mask[1].tolist() == [True] * m + [False] * (n - m)
    assert batch.utterance_mask[0].nonzero().flatten().tolist() == list(
        range(long.utterance_start, n))
    assert batch.utterance_mask[1].nonzero().flatten().tolist() == [m - 1]
    assert batch.ext_ids[1, m:].eq(PAD_ID).all()
    assert batch.ext_ids[1, :m].tolist() == short.ext_ids
    assert batch.max_oov == max(len(long.oov), len(short.oov))
    assert batch.targets[1].tolist() == targets[1] + [PAD_ID] * (len(targets[0]) - len(targets[1]))
    assert batch.needs_rewrite.tolist() == [1.0, 0.0]
    assert batch.features[0, :, 3].tolist() == long.bio_ids
    assert torch.equal(batch.features[..., 0] != PAD_ID, batch.source_mask)


# --- clean_text ------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, expected", [
    ("play\x00 it", "play it"),
    ("play\x00it", "play it"),
    ("  who\x07 sings\x1b[0m\u200b believer  ", "who sings [0m believer"),
    ("one\r\ntwo\tthree\x0bfour", "one two three four"),
    ("café ☕ São Paulo", "café ☕ São Paulo"),
    ("\x00\x01", ""),
])
def test_clean_text_drops_control_characters(raw, expected):
    cleaned = clean_text(raw)
    assert cleaned == expected
    assert all(c.isprintable() for c in cleaned)


def test_tokenizer_remembers_a_bounded_number_of_texts():
    tokenizer = Tokenizer()
    tokenizer.CACHE_SIZE = 3
    texts = [f"play song number {i}" for i in range(7)]
    first = [tokenizer(text) for text in texts]
    assert len(tokenizer._cache) <= 3
    assert [tokenizer(text) for text in texts] == first  # forgotten or remembered, same tokens
    assert [t.text for t in tokenizer("play Imagine Dragons' song")] == \
        ["play", "Imagine", "Dragons", "'", "song"]
