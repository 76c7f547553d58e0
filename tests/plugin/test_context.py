"""Bot turns' entity spans from the domain's response templates, on real Rasa domains and
trackers (no trained model needed)."""
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, BotUttered, SlotSet, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

from cqr_rasa.dialogue import EntitySpan
from cqr_rasa.plugin.context import ResponseTemplates, context_turns

DOMAIN = """
version: "3.1"
slots:
  singer:
    type: text
    mappings:
    - type: from_entity
      entity: artist
  song:
    type: text
    mappings:
    - type: from_entity
      entity: song
responses:
  utter_play:
  - text: "Playing {song}."
  - text: "Playing {song} by {singer}."
  utter_tour:
  - text: "{band} play in {city} on {day}."
  utter_braces:
  - text: "Say {{song}} to me."
  utter_fixed:
  - text: "Okay."
"""


def templates() -> ResponseTemplates:
    return ResponseTemplates(Domain.from_yaml(DOMAIN))


def test_placeholder_fills_become_spans_of_the_slots_entity():
    text = "Playing Bad Guy by Billie Eilish."
    assert templates()("utter_play", text) == [
        EntitySpan(8, 15, "song", "Bad Guy"), EntitySpan(19, 32, "artist", "Billie Eilish")]
    # the variation with fewer placeholders still matches its own texts
    assert templates()("utter_play", "Playing Bad Guy.") == [EntitySpan(8, 15, "song", "Bad Guy")]


def test_placeholders_that_are_no_slot_keep_their_name():
    # e.g. values a custom action passes to `dispatcher.utter_message(response=..., band=...)`
    spans = templates()("utter_tour", "Imagine Dragons play in Las Vegas on Friday.")
    assert [(s.entity, s.value) for s in spans] == [
        ("band", "Imagine Dragons"), ("city", "Las Vegas"), ("day", "Friday")]


def test_texts_not_written_from_the_response_give_nothing():
    spans = templates()
    assert spans("utter_play", "Something else entirely.") == []
    assert spans("utter_unknown", "Playing Bad Guy.") == []
    assert spans("utter_fixed", "Okay.") == []
    assert spans("utter_braces", "Say {song} to me.") == []
    assert spans("utter_play", "Playing None.") == []  # an empty slot is written as "None"


def test_context_turns_prefer_the_template_over_value_matching():
    tracker = DialogueStateTracker.from_events("t", [
        ActionExecuted("action_listen"),
        UserUttered("who plays in vegas", {"name": "ask_tour", "confidence": 1.0}),
        SlotSet("song", "Imagine"),  # a slot value inside the band's name
        BotUttered("Imagine Dragons play in Las Vegas on Friday.",
                   metadata={"utter_action": "utter_tour"}),
        BotUttered("Imagine Dragons play in Las Vegas on Friday."),  # no response recorded
    ])
    with_templates = context_turns(tracker, 8, response_entities=templates())
    assert [(s.entity, s.value) for s in with_templates[1].entities] == [
        ("band", "Imagine Dragons"), ("city", "Las Vegas"), ("day", "Friday")]
    assert [(s.entity, s.value) for s in with_templates[2].entities] == [("song", "Imagine")]
    without = context_turns(tracker, 8)
    assert [(s.entity, s.value) for s in without[1].entities] == [("song", "Imagine")]


def test_context_turns_keep_the_last_turns_and_the_slots_set_before_them():
    events = [ActionExecuted("action_listen"),
              UserUttered("play believer", {"name": "play_song", "confidence": 1.0}),
              SlotSet("singer", "Imagine Dragons"),
              BotUttered("Playing it.")]
    for k in range(5):
        events += [ActionExecuted("action_listen"),
                   UserUttered(f"thanks {k}", {"name": "thank", "confidence": 1.0}),
                   BotUttered("Imagine Dragons again?" if k == 4 else "You're welcome.")]
    tracker = DialogueStateTracker.from_events("t", events)
    turns = context_turns(tracker, 3)
    assert [(t.speaker, t.text) for t in turns] == [
        ("bot", "You're welcome."), ("user", "thanks 4"), ("bot", "Imagine Dragons again?")]
    # the slot set six turns before the window still names the artist in its last turn
    assert turns[-1].entities == [EntitySpan(0, 15, "singer", "Imagine Dragons")]
    assert len(context_turns(tracker, 12)) == 12 and len(context_turns(tracker, 100)) == 12
