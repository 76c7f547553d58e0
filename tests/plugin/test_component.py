"""The component inside real Rasa: the example bot trained with `rasa train`, talked to through
`Agent`, with and without the component in its pipeline."""
import asyncio
import logging
import uuid
from pathlib import Path

import pytest
from rasa.core.agent import Agent
from rasa.engine.graph import ExecutionContext
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.engine.storage.resource import Resource
from rasa.shared.core.events import ActionExecuted, BotUttered, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.shared.exceptions import InvalidConfigException
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from cqr_rasa.dialogue import BOT, USER, EntitySpan, Example, Turn
from cqr_rasa.plugin.component import (REWRITE_KEY, ComponentConfig, ContextualQueryRewriter,
                                     _intent_entity_types)

pytestmark = pytest.mark.slow


def run(coroutine):
    return asyncio.run(coroutine)


@pytest.fixture(scope="module")
def agent(example_model) -> Agent:
    return Agent.load(str(example_model))


@pytest.fixture(scope="module")
def plain_agent(example_model_without_rewriter) -> Agent:
    return Agent.load(str(example_model_without_rewriter))


def talk(agent: Agent, *texts: str):
    """Sends the texts as one conversation; returns the bot replies and the final tracker."""
    sender = uuid.uuid4().hex
    replies = [[r.get("text") for r in run(agent.handle_text(text, sender_id=sender))]
               for text in texts]
    return replies, run(agent.tracker_store.retrieve(sender))


def user_turns(tracker: DialogueStateTracker):
    return [e for e in tracker.events if isinstance(e, UserUttered)]


def entities(parse_data, kind):
    return [e["value"] for e in parse_data.get("entities", []) if e["entity"] == kind]


def test_reference_is_resolved_and_reparsed(agent):
    replies, tracker = talk(agent, "who sings believer", "play their latest album")
    assert replies[0] == ["'Believer' is by Imagine Dragons."]
    last = user_turns(tracker)[-1]
    assert last.text == "play their latest album"  # the tracker keeps the user's own words
    parse = last.parse_data
    assert parse["intent"]["name"] == "play_album"
    assert entities(parse, "artist") == ["Imagine Dragons"]
    info = parse[REWRITE_KEY]
    assert info["applied"] is True and info["reason"] == "rewritten"
    assert info["original_text"] == "play their latest album"
    assert "Imagine Dragons" in info["rewritten_text"] == parse["text"]
    assert 0.3 <= info["confidence"] <= 1.0
    assert info["first_pass_intent"] == "play_album"
    copied = {w["word"]: w["from_turn"] for w in info["inserted"]}
    assert copied["Imagine"]["speaker"] == "bot"
    assert copied["Imagine"]["text"] == "'Believer' is by Imagine Dragons."
    assert tracker.get_slot("artist") == "Imagine Dragons"
    assert replies[1] == ["Playing the latest album by Imagine Dragons."]


def test_without_the_component_the_artist_is_missing(plain_agent):
    replies, tracker = talk(plain_agent, "who sings believer", "play their latest album")
    parse = user_turns(tracker)[-1].parse_data
    assert entities(parse, "artist") == []
    assert REWRITE_KEY not in parse
    assert replies[1] == ["Whose album should I play?"]


def test_nothing_to_resolve_is_left_alone(agent):
    _, tracker = talk(agent, "who sings yellow", "thanks")
    info = user_turns(tracker)[-1].parse_data[REWRITE_KEY]
    assert info["applied"] is False and info["rewritten_text"] == "thanks"
    assert info["reason"] == "unchanged"


def test_a_rewrite_that_drops_the_users_words_is_refused(agent):
    """The example bot's rewriter leaves the emoji out of this rewrite: the message goes on as
    it was sent, and the `rewrite` object says what the refused rewrite left out."""
    text = "play their latest album \U0001F3B8\U0001F525"
    _, tracker = talk(agent, "who sings believer", text)
    turn = user_turns(tracker)[-1]
    info = turn.parse_data[REWRITE_KEY]
    assert (turn.text, info["applied"], info["reason"]) == (text, False, "drops_words")
    assert info["rewritten_text"] == text and "\U0001F3B8" in info["dropped"]


def test_first_turn_has_no_history(agent):
    parse = run(agent.parse_message("play their latest album"))
    assert parse["text"] == "play their latest album"
    assert parse[REWRITE_KEY]["reason"] == "no_history"
    assert parse[REWRITE_KEY]["applied"] is False


def test_intent_payload_and_skip_intents_are_not_rewritten(agent, example_model, tmp_path):
    _, tracker = talk(agent, "who sings believer", '/play_album{"artist": "Queen"}', "hi")
    payload, greeting = user_turns(tracker)[-2:]
    assert payload.intent_name == "play_album"
    assert [e["value"] for e in payload.entities] == ["Queen"]
    assert greeting.parse_data[REWRITE_KEY]["reason"] == "skip_intent"
    component = _loaded_component(example_model, tmp_path)
    text = '/play_album{"artist": "Queen"}'
    [out] = component.process([Message(data={"text": text})], _tracker_after_believer())
    assert out.get("text") == text and out.get(REWRITE_KEY)["reason"] == "intent_payload"


def _loaded_component(model_path: Path, tmp_path: Path, **settings) -> ContextualQueryRewriter:
    """The component as Rasa loads it from the archive (same graph, same storage); `settings`
    replace config keys, as editing config.yml would."""
    # the directory must exist: Rasa moves each component's folder into it, and into a missing
    # path the first folder would be renamed to be the storage itself
    (tmp_path / "storage").mkdir(parents=True)
    storage, metadata = LocalModelStorage.from_model_archive(tmp_path / "storage", model_path)
    schema = metadata.predict_schema
    node_name = next(n for n, node in schema.nodes.items()
                     if node.uses is ContextualQueryRewriter)
    node = schema.nodes[node_name]
    context = ExecutionContext(schema, metadata.model_id, node_name=node_name)
    return ContextualQueryRewriter.load({**node.config, **settings}, storage, node.resource,
                                        context)


def _tracker_after_believer() -> DialogueStateTracker:
    return DialogueStateTracker.from_events("t", [
        ActionExecuted("action_listen"),
        UserUttered("who sings believer", {"name": "ask_artist", "confidence": 1.0},
                    [{"entity": "song", "value": "Believer", "start": 10, "end": 18}]),
        BotUttered("'Believer' is by Imagine Dragons."),
        ActionExecuted("action_listen"),
    ])


def test_the_rerun_parses_as_the_bot_does(agent, example_model, tmp_path):
    component = _loaded_component(example_model, tmp_path)
    for text in ("play Imagine Dragons' latest album", "who sings yellow"):
        bot = run(agent.parse_message(text))  # no history: the component changes nothing
        rerun = component._upstream.parse(text, Message(data={"text": text}), None)
        assert rerun.get("text") == text
        assert rerun.get("intent")["name"] == bot["intent"]["name"]
        assert rerun.get("intent")["confidence"] == pytest.approx(bot["intent"]["confidence"])
        assert [(e["entity"], e["value"]) for e in rerun.get("entities")] == \
            [(e["entity"], e["value"]) for e in bot["entities"]]


def test_the_rerun_calls_the_runners_own_nlu_nodes(agent, example_model, tmp_path):
    """Loaded by Rasa, the re-run shares the nodes of the first parse (no second copy of the
    NLU's weights); loaded on its own, outside a runner, the component builds its own."""
    nodes = agent.processor.graph_runner._instantiated_nodes
    names = list(nodes)  # the predict schema's order: the NLU, then the rewriter
    rewriter = next(name for name in names
                    if isinstance(nodes[name]._component, ContextualQueryRewriter))
    steps = nodes[rewriter]._component._upstream._steps
    assert nodes[rewriter]._component._upstream.shared
    assert [name for name, _, _ in steps] == names[:names.index(rewriter)]
    assert all(node is nodes[name] for name, node, _ in steps)
    alone = _loaded_component(example_model, tmp_path)._upstream
    assert not alone.shared
    assert not any(node is nodes.get(name) for name, node, _ in alone._steps)


def test_errors_inside_the_rewrite_keep_the_message(example_model, tmp_path, caplog):
    component = _loaded_component(example_model, tmp_path)

    def broken(turns, copy_types=None):
        raise RuntimeError("boom")

    component._rewriter.rewrite = broken
    message = Message(data={"text": "play their latest album",
                            "intent": {"name": "play_album", "confidence": 0.9}})
    with caplog.at_level(logging.WARNING):
        [out] = component.process([message], _tracker_after_believer())
    assert out is message and out.get("text") == "play their latest album"
    assert out.get(REWRITE_KEY)["reason"] == "error: RuntimeError"
    assert "boom" in caplog.text


def test_bot_turns_get_spans_from_the_domains_response_templates(example_model, tmp_path):
    """A value no slot holds and no training data names ("Hozier", as a custom action might pass
    it to `utter_message`) is found in the bot text through the response it was written from."""
    component = _loaded_component(example_model, tmp_path)
    tracker = DialogueStateTracker.from_events("t", [
        ActionExecuted("action_listen"),
        UserUttered("play take me to church", {"name": "play_song", "confidence": 1.0}),
        BotUttered("Playing Take Me to Church by Hozier.",
                   metadata={"utter_action": "utter_play_song_by_artist"}),
        ActionExecuted("action_listen"),
    ])
    bot = component.history(tracker)[-1]
    assert [(s.entity, s.value) for s in bot.entities] == [
        ("song", "Take Me to Church"), ("artist", "Hozier")]
    message = Message(data={"text": "play their latest album",
                            "intent": {"name": "play_album", "confidence": 0.9}})
    [out] = component.process([message], tracker)
    info = out.get(REWRITE_KEY)
    assert info["applied"] is True and "Hozier" in info["rewritten_text"]
    assert {w["word"]: w["from_turn"]["turns_back"] for w in info["inserted"]
            if w["from_turn"]}["Hozier"] == 1


def test_beam_search_with_eos_penalty_from_the_config(example_model, tmp_path):
    component = _loaded_component(example_model, tmp_path / "beam", beam_size=4, eos_penalty=3.0)
    settings = component._rewriter.config
    assert (settings.beam_size, settings.eos_penalty) == (4, 3.0)
    message = Message(data={"text": "play their latest album",
                            "intent": {"name": "play_album", "confidence": 0.9}})
    [out] = component.process([message], _tracker_after_believer())
    assert out.get(REWRITE_KEY)["applied"] is True
    assert "Imagine Dragons" in out.get(REWRITE_KEY)["rewritten_text"]


def test_copies_only_the_entity_types_of_the_first_pass_intent(example_model, tmp_path):
    tracker = DialogueStateTracker.from_events("t", [
        ActionExecuted("action_listen"),
        UserUttered("how's the traffic to zorb plaza", {"name": "ask_traffic", "confidence": 1.0},
                    [{"entity": "poi", "value": "zorb plaza", "start": 21, "end": 31}]),
        BotUttered("There is moderate traffic on the way to Zorb Plaza."),
        ActionExecuted("action_listen")])

    def rewrite(component):
        message = Message(data={"text": "take me there",
                                "intent": {"name": "navigate", "confidence": 0.9}})
        return component.process([message], tracker)[0].get(REWRITE_KEY)["rewritten_text"]

    component = _loaded_component(example_model, tmp_path / "default")
    # built at `rasa train` from the example bot's NLU data
    assert component._intent_entities["navigate"] == ["poi"]
    assert rewrite(component) == "take me to zorb plaza"
    component._intent_entities = {"navigate": ["city"]}
    assert "zorb" not in rewrite(component).lower()
    free = _loaded_component(example_model, tmp_path / "free", copy_intent_entities_only=False)
    free._intent_entities = {"navigate": ["city"]}
    assert rewrite(free) == "take me to zorb plaza"


def test_intent_entity_types_come_from_nlu_examples_and_rewrites():
    nlu = TrainingData([
        Message(data={"text": "play yellow", "intent": "play_song",
                      "entities": [{"entity": "song", "value": "yellow", "start": 5, "end": 11}]}),
        Message(data={"text": "thanks", "intent": "thank"})])
    question, answer = "who sings yellow", "'Yellow' is by Coldplay"
    context = [Turn(USER, question, "ask_artist", [EntitySpan(10, 16, "song")]),
               Turn(BOT, answer, None, [EntitySpan(1, 7, "song"), EntitySpan(15, 23, "artist")])]
    rewrites = [
        Example(context + [Turn(USER, "play their album", "play_song")], "play Coldplay's album",
                gold_values=["Coldplay"]),
        # no intent on the utterance, or nothing carried over: nothing to learn
        Example(context + [Turn(USER, "play their hits")], "play Coldplay's hits",
                gold_values=["Coldplay"]),
        Example(context + [Turn(USER, "thanks", "thank")], "thanks")]
    assert _intent_entity_types(nlu, rewrites) == {"play_song": ["artist", "song"]}


def test_persisted_model_gives_the_same_rewrite(example_model, example_bot_dir, tmp_path):
    """Train in memory, persist, load: the loaded component rewrites exactly as the trained one."""
    loaded = _loaded_component(example_model, tmp_path)
    config = {**loaded.config.__dict__, "epochs": 2, "synthetic_examples": 1,
              "training_threads": 1,
              "rewrites_file": str(example_bot_dir / "data" / "rewrites.yml")}
    (tmp_path / "fresh").mkdir()
    storage = LocalModelStorage.create(tmp_path / "fresh")
    resource = Resource("cqr")
    trained = ContextualQueryRewriter.create(config, storage, resource,
                                             ExecutionContext(None))
    nlu = TrainingData([
        Message(data={"text": "play yellow", "intent": "play_song",
                      "entities": [{"entity": "song", "value": "yellow", "start": 5, "end": 11}]}),
        Message(data={"text": "play adele's new album", "intent": "play_album", "entities": [
            {"entity": "artist", "value": "adele", "start": 5, "end": 10}]}),
        Message(data={"text": "thanks", "intent": "thank"})])
    trained.train(nlu)
    reloaded = ContextualQueryRewriter.load(config, storage, resource, ExecutionContext(None))
    # the NLU examples' types, and those the example bot's rewrites carry over
    assert reloaded._intent_entities == trained._intent_entities
    assert trained._intent_entities["play_album"] == ["album", "artist"]
    assert "thank" not in trained._intent_entities
    turns = _tracker_after_believer()
    for text, intent in (("play their latest album", "play_album"), ("thanks", "thank"),
                         ("play her new album", "play_song")):
        message = {"text": text, "intent": {"name": intent, "confidence": 0.9}}
        before = trained.process([Message(data=message)], turns)[0].get(REWRITE_KEY)
        after = reloaded.process([Message(data=message)], turns)[0].get(REWRITE_KEY)
        assert before.pop("milliseconds") >= 0 and after.pop("milliseconds") >= 0
        assert before == after
        assert before["confidence"] is not None


def test_bad_config_and_missing_rewrites_file_fail_clearly(tmp_path, monkeypatch):
    with pytest.raises(InvalidConfigException, match="min_confidence.*between 0 and 1"):
        ComponentConfig.from_dict({"min_confidence": 3})
    for bad in (-1.0, True, "3"):
        with pytest.raises(InvalidConfigException, match="`eos_penalty` is .*a number >= 0"):
            ComponentConfig.from_dict({"eos_penalty": bad})
    with pytest.raises(InvalidConfigException, match="`training_threads` is 0; .*integer >= 1"):
        ComponentConfig.from_dict({"training_threads": 0})
    with pytest.raises(InvalidConfigException, match="`copy_intent_entities_only` is 'no'"):
        ComponentConfig.from_dict({"copy_intent_entities_only": "no"})
    monkeypatch.chdir(tmp_path)
    component = ContextualQueryRewriter.create(
        ContextualQueryRewriter.get_default_config(), LocalModelStorage.create(tmp_path / "s"),
        Resource("cqr"), ExecutionContext(None))
    with pytest.raises(InvalidConfigException, match=r"rewrites_file 'data/rewrites.yml' not found"):
        component.train(TrainingData())
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "rewrites.yml").write_text(
        "rewrites:\n- conversation:\n  - bot: hi\n  rewrite: hi\n")
    with pytest.raises(InvalidConfigException, match=r"rewrites.yml, rewrite example 1"):
        component.train(TrainingData())


def test_fingerprint_follows_the_rewrites_file(tmp_path):
    path = tmp_path / "rewrites.yml"
    path.write_text("rewrites: []\n")
    first = ContextualQueryRewriter.fingerprint_addon({"rewrites_file": str(path)})
    assert first == ContextualQueryRewriter.fingerprint_addon({"rewrites_file": str(path)})
    path.write_text("rewrites: [] # edited\n")
    assert first != ContextualQueryRewriter.fingerprint_addon({"rewrites_file": str(path)})
