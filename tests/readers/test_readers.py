"""Tests of the data readers: CQR JSON, JSONL, Rasa-style YAML, annotations, format detection."""
import json
from pathlib import Path

import pytest

from cqr_rasa.dialogue import BOT, USER, EntitySpan
from cqr_rasa.readers import DataError, read_cqr_json, read_examples, read_jsonl, read_rasa_yaml
from cqr_rasa.readers.rasa_yaml import parse_annotated

DEV = Path(__file__).resolve().parents[2].parent / "shared/data/cqr/cqr_kvret_dev_public.json"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def assert_spans_match(turn):
    """Every span lies in the text, matches its value case-insensitively, and none overlap."""
    previous_end = 0
    for span in turn.entities:
        assert previous_end <= span.start < span.end <= len(turn.text)
        assert turn.text[span.start:span.end].lower() == span.value.lower()
        previous_end = span.end


# --- CQR JSON -------------------------------------------------------------------------------

def driver(text):
    return {"turn": "driver", "data": {"utterance": text, "end_dialogue": False}}


def assistant(text, slots, reformulation=None):
    turn = {"turn": "assistant", "data": {"utterance": text, "slots": slots, "requested": {}}}
    if reformulation is not None:
        turn["reformulation"] = reformulation
    return turn


CQR = [{
    "dialogue": [
        driver("  find me a coffee shop  "),
        assistant("Peet's Coffee is 2 miles away.",
                  {"poi": "Peet's Coffee ", "distance": "2 miles", "traffic": "miles",
                   "unit": "mile", "part": "hat", "verb": "is 2",
                   "poi_type": "coffee shop"}),
        driver("what is the address"),
        assistant("It is at 100 Main St.", {"address": "100 main st"}, {
            "base_utt_idx": 2, "reformulated_utt": " what is the address of Peet's Coffee ",
            "slots": {"poi": "Peet's Coffee ", "address": ["100 Main St", ["100 Main St "]]},
            "gold_slots": [], "flag": "locative; ;nominal ",
            "mturk_reformulations": [" address of Peet's Coffee? ", "",
                                     "what is the address of Peet's Coffee",
                                     "address of Peet's Coffee?"]}),
        driver("thanks"),
        assistant("You're welcome.", {}, {
            "base_utt_idx": 4, "reformulated_utt": None, "slots": {"poi": "Peet's Coffee"},
            "gold_slots": [], "flag": None, "mturk_reformulations": None}),
    ],
    "scenario": {"kb": {}, "task": {"intent": "navigate"}, "uuid": "u-1"},
}]


@pytest.fixture
def cqr_file(tmp_path):
    return write(tmp_path / "cqr.json", json.dumps(CQR))


def texts(example):
    return [turn.text for turn in example.turns]


def test_cqr_online_context_stops_before_the_base_utterance(cqr_file):
    first, second = read_cqr_json(cqr_file, "online")
    assert texts(first) == ["find me a coffee shop", "Peet's Coffee is 2 miles away.",
                            "what is the address"]
    assert texts(second) == texts(first) + ["It is at 100 Main St.", "thanks"]
    assert [t.speaker for t in first.turns] == [USER, BOT, USER]


def test_cqr_full_context_reaches_the_reformulation_turn(cqr_file):
    first, second = read_cqr_json(cqr_file, "full")
    assert texts(first) == ["find me a coffee shop", "Peet's Coffee is 2 miles away.",
                            "It is at 100 Main St.", "what is the address"]
    assert texts(second) == ["find me a coffee shop", "Peet's Coffee is 2 miles away.",
                             "what is the address", "It is at 100 Main St.", "You're welcome.",
                             "thanks"]


def test_cqr_fields(cqr_file):
    first, second = read_cqr_json(cqr_file)
    assert first.id == "u-1:3" and second.id == "u-1:5"
    assert first.rewrite == "what is the address of Peet's Coffee"
    assert first.gold_values == ["Peet's Coffee", "100 Main St"]
    assert first.category == ["locative", "nominal"]
    assert first.alternatives == ["address of Peet's Coffee?"]
    assert {t.intent for t in first.turns} == {"navigate"}
    assert second.rewrite == "thanks" and not second.needs_rewrite
    assert second.gold_values == second.category == second.alternatives == []


def test_cqr_entity_spans_prefer_longer_values_on_word_boundaries(cqr_file):
    first = read_cqr_json(cqr_file)[0]
    assert first.turns[0].entities == [EntitySpan(10, 21, "poi_type", "coffee shop")]
    assert first.turns[1].entities == [EntitySpan(0, 13, "poi", "Peet's Coffee"),
                                       EntitySpan(17, 24, "distance", "2 miles")]
    assert first.turns[2].entities == [EntitySpan(9, 20, "address", "100 Main St")]
    assert first.turns[3].entities == []


def test_cqr_knowledge_base_values_are_tagged_after_slot_values(tmp_path):
    record = {
        "dialogue": [
            driver("where is the closest gas station"),
            assistant("Valero is 4 miles away at 200 Alester Ave.", {"place": "Valero"}),
            driver("take me there"),
            assistant("Sending directions.", {}, {
                "base_utt_idx": 2, "reformulated_utt": "take me to Valero at 200 Alester Ave",
                "slots": {"poi": "Valero"}, "flag": "locative"}),
        ],
        "scenario": {"kb": {"items": [
            {"poi": "Valero", "address": "200 Alester Ave", "distance": "4 miles",
             "poi_type": "gas station"},
            {"poi": "Chevron", "address": "783 Arcadia Pl", "distance": "5 miles",
             "poi_type": "gas station"}]},
            "task": {"intent": "navigate"}, "uuid": "u-2"},
    }
    [example] = read_cqr_json(write(tmp_path / "kb.json", json.dumps([record])))
    assert example.turns[0].entities == [EntitySpan(21, 32, "poi_type", "gas station")]
    assert example.turns[1].entities == [EntitySpan(0, 6, "place", "Valero"),
                                         EntitySpan(10, 17, "distance", "4 miles"),
                                         EntitySpan(26, 41, "address", "200 Alester Ave")]


def test_cqr_bad_base_index_names_file_and_dialogue(tmp_path):
    data = json.loads(json.dumps(CQR))
    data.append(json.loads(json.dumps(CQR[0])))
    data[1]["dialogue"][3]["reformulation"]["base_utt_idx"] = 1
    path = write(tmp_path / "bad.json", json.dumps(data))
    with pytest.raises(DataError) as err:
        read_cqr_json(path)
    assert str(path) in str(err.value) and "dialogue 2" in str(err.value)
    assert "base_utt_idx" in str(err.value)


def test_cqr_malformed_record_names_file_and_dialogue(tmp_path):
    data = json.loads(json.dumps(CQR))
    del data[0]["scenario"]
    path = write(tmp_path / "bad.json", json.dumps(data))
    with pytest.raises(DataError, match=r"bad\.json, dialogue 1: malformed record.*scenario"):
        read_cqr_json(path)


def test_cqr_invalid_json_names_the_line(tmp_path):
    path = write(tmp_path / "broken.json", '[\n{"dialogue": []},\n{oops}\n]')
    with pytest.raises(DataError, match=r"broken\.json, line 3: invalid JSON"):
        read_cqr_json(path)


def test_cqr_rejects_json_that_is_not_cqr(tmp_path):
    path = write(tmp_path / "other.json", '[{"turns": []}]')
    with pytest.raises(DataError, match=r"other\.json: top level must be"):
        read_cqr_json(path)


@pytest.mark.parametrize("reader", [read_cqr_json, read_examples])
def test_invalid_protocol_names_allowed_values(cqr_file, reader):
    with pytest.raises(ValueError, match="online, full; got 'offline'"):
        reader(cqr_file, "offline")


# --- JSONL ----------------------------------------------------------------------------------

GOOD_JSONL = "\n".join([
    json.dumps({"id": "a", "turns": [
        {"speaker": "user", "text": "who sings believer", "intent": "ask_artist",
         "entities": [{"start": 10, "end": 18, "entity": "song"}]},
        {"speaker": "bot", "text": "Imagine Dragons",
         "entities": [{"start": 0, "end": 15, "entity": "artist", "value": "imagine dragons"}]},
        {"speaker": "user", "text": "play their latest album"}],
        "rewrite": "play Imagine Dragons' latest album", "gold_values": ["Imagine Dragons"],
        "extra": "ignored"}),
    "",
    json.dumps({"turns": [{"speaker": "user", "text": "thanks"}], "rewrite": "thanks"}),
]) + "\n"


def test_jsonl_reads_examples(tmp_path):
    first, second = read_jsonl(write(tmp_path / "data.jsonl", GOOD_JSONL))
    assert first.id == "a" and first.rewrite == "play Imagine Dragons' latest album"
    assert first.gold_values == ["Imagine Dragons"]
    assert first.turns[0].intent == "ask_artist" and first.turns[1].intent is None
    assert first.turns[0].entities == [EntitySpan(10, 18, "song", "believer")]
    assert first.turns[1].entities == [EntitySpan(0, 15, "artist", "imagine dragons")]
    assert second.id == "data.jsonl:3"
    assert second.gold_values == [] and not second.needs_rewrite


USER_TURN = {"speaker": "user", "text": "hello there"}


@pytest.mark.parametrize("line, problem", [
    ("{not json", "invalid JSON"),
    ("[1, 2]", "expected a JSON object"),
    (json.dumps({"turns": [], "rewrite": "x"}), "non-empty list"),
    (json.dumps({"turns": [USER_TURN, {"speaker": "bot", "text": "hi"}], "rewrite": "x"}),
     "last turn must have"),
    (json.dumps({"turns": [{"speaker": "system", "text": "hi"}], "rewrite": "x"}),
     "turn 1 has \"speaker\" 'system'"),
    (json.dumps({"turns": [{"speaker": "user"}], "rewrite": "x"}), "string \"text\""),
    (json.dumps({"turns": [dict(USER_TURN, entities=[{"start": 3, "end": 3, "entity": "e"}])],
                 "rewrite": "x"}), "0 <= start < end <= 11"),
    (json.dumps({"turns": [dict(USER_TURN, entities=[{"start": 0, "end": 12, "entity": "e"}])],
                 "rewrite": "x"}), "0 <= start < end <= 11"),
    (json.dumps({"turns": [dict(USER_TURN, entities=[{"start": "0", "end": 2, "entity": "e"}])],
                 "rewrite": "x"}), "must be integers"),
    (json.dumps({"turns": [dict(USER_TURN, entities=[{"start": 0, "end": 2}])], "rewrite": "x"}),
     "non-empty string \"entity\""),
    (json.dumps({"turns": [USER_TURN], "rewrite": "  "}), "\"rewrite\" must be a non-empty"),
    (json.dumps({"turns": [USER_TURN]}), "\"rewrite\" must be a non-empty"),
    (json.dumps({"turns": [USER_TURN], "rewrite": "x", "gold_values": "x"}), "gold_values"),
])
def test_jsonl_errors_name_file_and_line(tmp_path, line, problem):
    path = write(tmp_path / "bad.jsonl", GOOD_JSONL + line + "\n")
    with pytest.raises(DataError) as err:
        read_jsonl(path)
    assert str(err.value).startswith(f"{path}, line 4: ")
    assert problem in str(err.value)


# --- annotations ----------------------------------------------------------------------------

def test_parse_annotated_offsets_and_values():
    text = ('play [Believer](song) by '
            '[Imagine  Dragons]{"entity": "artist", "value": "imagine dragons"}!')
    plain, spans = parse_annotated(text)
    assert plain == "play Believer by Imagine  Dragons!"
    assert spans == [EntitySpan(5, 13, "song", "Believer"),
                     EntitySpan(17, 33, "artist", "imagine dragons")]
    assert [plain[s.start:s.end] for s in spans] == ["Believer", "Imagine  Dragons"]


def test_parse_annotated_json_form_without_value_and_plain_text():
    assert parse_annotated('[café]{"entity": "place", "role": "to"} ok') == (
        "café ok", [EntitySpan(0, 4, "place", "café")])
    assert parse_annotated("no entities (here)") == ("no entities (here)", [])


@pytest.mark.parametrize("text, problem", [
    ("play [believer(song)", "'[' at character 6 is not closed"),
    ("play [a [b](x)](y)", "'[' at character 6 is not closed"),
    ("play believer](song)", "']' at character 14 has no matching '['"),
    ("play [believer] now", "must be followed by '(entity)'"),
    ("play [believer](song", "'(' at character 16 is not closed"),
    ("play [](song)", "annotates no text"),
    ("play [believer]()", "names no entity"),
    ('play [believer]{"value": "b"}', "names no entity"),
    ('play [believer]{"entity": song}', "valid JSON object"),
])
def test_parse_annotated_rejects_bad_annotations(text, problem):
    with pytest.raises(ValueError) as err:
        parse_annotated(text)
    assert problem in str(err.value)


# --- Rasa-style YAML ------------------------------------------------------------------------

GOOD_YAML = """\
version: "3.1"
rewrites:
- conversation:
  - user: who sings [believer](song)
    intent: ask_artist
  - bot: "'[Believer](song)' is by [Imagine Dragons](artist)"
  - user: play their latest album
  rewrite: play [Imagine Dragons](artist)' latest album
- id: thanks-1
  conversation:
  - user: '[Lyon]{"entity": "city", "value": "lyon"} weather'
  - bot: Sunny.
  - user: thanks
  rewrite: thanks
"""


def test_rasa_yaml_reads_examples(tmp_path):
    first, second = read_rasa_yaml(write(tmp_path / "rewrites.yml", GOOD_YAML))
    assert first.id == "rewrites.yml:1" and second.id == "thanks-1"
    assert texts(first) == ["who sings believer", "'Believer' is by Imagine Dragons",
                            "play their latest album"]
    assert [t.speaker for t in first.turns] == [USER, BOT, USER]
    assert [t.intent for t in first.turns] == ["ask_artist", None, None]
    assert first.turns[1].entities == [EntitySpan(1, 9, "song", "Believer"),
                                       EntitySpan(17, 32, "artist", "Imagine Dragons")]
    assert first.rewrite == "play Imagine Dragons' latest album"
    assert first.gold_values == ["Imagine Dragons"]
    assert second.turns[0].text == "Lyon weather"
    assert second.turns[0].entities == [EntitySpan(0, 4, "city", "lyon")]
    assert second.gold_values == [] and not second.needs_rewrite


TURNS = "  conversation:\n  - user: hi\n"


@pytest.mark.parametrize("text, where, problem", [
    ("- user: hi\n", None, "top-level `rewrites:` list"),
    ("version: '3.1'\nnlu: []\n", None, "top-level `rewrites:` list"),
    (f"rewrites:\n- rewrite: hi\n{TURNS}  rewrite: hi\n- rewrite: x\n", "rewrite example 2",
     "`conversation:` list"),
    ("rewrites:\n- conversation:\n  - user: hi\n    bot: hello\n  rewrite: hi\n",
     "rewrite example 1, turn 1", "exactly one of `user:` or `bot:`"),
    ("rewrites:\n- conversation:\n  - bot: hello\n    intent: greet\n  - user: hi\n  rewrite: hi\n",
     "rewrite example 1, turn 1", "exactly one of `user:` or `bot:`"),
    ("rewrites:\n- conversation:\n  - hi\n  rewrite: hi\n", "rewrite example 1, turn 1",
     "exactly one of"),
    ("rewrites:\n- conversation:\n  - user: yes\n  rewrite: hi\n", "rewrite example 1, turn 1",
     "needs a non-empty text"),
    ("rewrites:\n- conversation:\n  - user: hi\n  - bot: hello\n  rewrite: hi\n",
     "rewrite example 1", "last turn must be a `user:` turn"),
    (f"rewrites:\n-{TURNS[1:]}", "rewrite example 1",
     "write `rewrite:` equal to the last user turn"),
    (f"rewrites:\n-{TURNS[1:]}  rewrite: ''\n", "rewrite example 1", "missing `rewrite:`"),
    (f"rewrites:\n-{TURNS[1:]}  rewrite: play [x(song)\n", "rewrite example 1, rewrite",
     "'[' at character 6 is not closed"),
    ("rewrites:\n- conversation:\n  - user: hi ]x[\n  rewrite: hi\n",
     "rewrite example 1, turn 1", "no matching '['"),
    ("rewrites:\n- conversation:\n  - user: play [x]{\"entity\": \"song\"}\n  rewrite: hi\n",
     "line 3", "YAML syntax error"),
])
def test_rasa_yaml_errors_name_file_and_position(tmp_path, text, where, problem):
    path = write(tmp_path / "bad.yml", text)
    with pytest.raises(DataError) as err:
        read_rasa_yaml(path)
    prefix = f"{path}, {where}: " if where else f"{path}: "
    assert str(err.value).startswith(prefix)
    assert problem in str(err.value)


def test_yaml_syntax_error_quotes_the_offending_line(tmp_path):
    path = write(tmp_path / "bad.yaml", "rewrites:\n- conversation: [\n  rewrite: : :\n")
    with pytest.raises(DataError) as err:
        read_rasa_yaml(path)
    assert str(path) in str(err.value) and "line " in str(err.value)
    assert "'rewrite: : :'" in str(err.value)


# --- format detection -----------------------------------------------------------------------

@pytest.mark.parametrize("name, content, first_id", [
    ("d.jsonl", GOOD_JSONL, "a"),
    ("d.JSONL", GOOD_JSONL, "a"),
    ("d.yml", GOOD_YAML, "d.yml:1"),
    ("d.yaml", GOOD_YAML, "d.yaml:1"),
    ("d.json", json.dumps(CQR), "u-1:3"),
])
def test_read_examples_detects_the_format(tmp_path, name, content, first_id):
    assert read_examples(write(tmp_path / name, content))[0].id == first_id


def test_read_examples_passes_the_protocol_to_cqr(cqr_file):
    assert len(read_examples(cqr_file, "online")[0].turns) == 3
    assert len(read_examples(cqr_file, "full")[0].turns) == 4


@pytest.mark.parametrize("name, content", [
    ("d.json", '{"rewrites": []}'),
    ("d.json", "[]"),
    ("d.txt", "hello"),
    ("d", "hello"),
])
def test_read_examples_rejects_unknown_formats(tmp_path, name, content):
    path = write(tmp_path / name, content)
    with pytest.raises(DataError) as err:
        read_examples(path)
    assert str(err.value).startswith(f"{path}: ")
    assert ".jsonl" in str(err.value) and ".yml" in str(err.value) and "CQR" in str(err.value)


@pytest.mark.parametrize("reader", [read_examples, read_jsonl, read_rasa_yaml, read_cqr_json])
def test_missing_file_is_reported(tmp_path, reader):
    path = tmp_path / "nope.jsonl"
    with pytest.raises(DataError, match=r"nope\.jsonl: file not found"):
        reader(path)


# --- the real CQR dev file ------------------------------------------------------------------

needs_dev = pytest.mark.skipif(not DEV.is_file(), reason=f"{DEV} not available")


@pytest.fixture(scope="module")
def dev_raw():
    return json.loads(DEV.read_text(encoding="utf-8"))


@needs_dev
@pytest.mark.parametrize("protocol", ["online", "full"])
def test_dev_counts(protocol):
    examples = read_examples(DEV, protocol)
    assert len(examples) == 470
    assert sum(e.needs_rewrite for e in examples) == 206
    assert sum(e.rewrite == e.utterance.text for e in examples) == 264
    assert len({e.id for e in examples}) == 470


@needs_dev
def test_dev_first_example():
    first = read_examples(DEV, "full")[0]
    assert first.id == "95c74b9f-b560-41ff-95da-6581d70514f9:3"
    assert first.utterance.speaker == USER
    assert first.utterance.text.startswith("make an appointment to reserve conference room 100")
    assert first.rewrite.startswith("make an appointment") and "Monday at 3pm" in first.rewrite
    assert first.needs_rewrite and first.category == ["zero"]
    assert "Monday" in first.gold_values and "3pm" in first.gold_values
    assert len(first.alternatives) == 10 and first.rewrite not in first.alternatives
    assert {t.intent for t in first.turns} == {"schedule"}
    assert len(first.turns) == 4 and read_examples(DEV, "online")[0].context == []


@needs_dev
def test_dev_contexts_follow_the_protocols(dev_raw):
    refs = [(dialogue["dialogue"], index, turn["reformulation"]["base_utt_idx"])
            for dialogue in dev_raw for index, turn in enumerate(dialogue["dialogue"])
            if turn.get("reformulation")]
    online, full = read_examples(DEV, "online"), read_examples(DEV, "full")
    for (turns, index, base), on, fu in zip(refs, online, full):
        utterances = [t["data"]["utterance"].strip() for t in turns]
        assert texts(on) == utterances[:base] + [utterances[base]]
        assert texts(fu) == [u for i, u in enumerate(utterances[:index + 1]) if i != base] + [
            utterances[base]]


@needs_dev
def test_dev_spans_match_their_values():
    examples = read_examples(DEV, "full")
    for example in examples:
        for turn in example.turns:
            assert_spans_match(turn)
    assert sum(len(t.entities) for e in examples for t in e.turns) > 1000
