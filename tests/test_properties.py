"""Property tests on hostile input: the rewriter and the context builder never raise, never return
empty text for non-empty input, and only write words from the vocabulary or the dialogue."""
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cqr_rasa.dialogue import BOT, USER, EntitySpan, Turn
from cqr_rasa.features import FeatureSpace, clean_text
from cqr_rasa.model import NetworkConfig, PointerGenerator
from cqr_rasa.rewriter import Rewriter, RewriterConfig
from cqr_rasa.spans import ValueMatcher

WORDS = ["play", "their", "latest", "album", "who", "sings", "it", "there", "the", "weather", "in",
         "Boston", "tomorrow", "is", "by", "'", "?", "."]


@pytest.fixture(scope="module")
def rewriter() -> Rewriter:
    """An untrained network that always decodes (threshold 0): the harshest case for the checks."""
    torch.manual_seed(3)
    turns = [Turn(USER, " ".join(WORDS), "ask", [EntitySpan(0, 4, "song")])]
    features = FeatureSpace.build([(turns, [" ".join(WORDS)])], word_min_count=1, gen_min_count=1)
    network = PointerGenerator(NetworkConfig(len(features.words), len(features.gen),
                                             len(features.intents), len(features.types),
                                             word_dim=16, hidden=16, attention=8, dropout=0.0))
    return Rewriter(features, network, RewriterConfig(rewrite_threshold=0.0))


hostile_text = st.one_of(
    st.text(max_size=80),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300),
    st.sampled_from(["", "   ", "\x00", "play \u200b\u200b their album", "\u202eمرحبا\u202c",
                     "🎵🎵 play it 🎶", "/play_album{\"artist\": \"Queen\"}", "x" * 5000,
                     "play\u00a0their\u2003album", "\t\n"]),
    st.lists(st.sampled_from(WORDS), max_size=30).map(" ".join),
)


@st.composite
def dialogues(draw):
    turns = []
    for index in range(draw(st.integers(0, 6))):
        text = draw(hostile_text)
        spans = []
        if text and draw(st.booleans()):
            start = draw(st.integers(0, len(text) - 1))
            spans.append(EntitySpan(start, draw(st.integers(start + 1, len(text))), "artist"))
        turns.append(Turn(BOT if index % 2 else USER, text, draw(st.sampled_from([None, "x"])),
                          spans))
    turns.append(Turn(USER, draw(hostile_text)))
    return turns


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(turns=dialogues())
def test_rewriter_never_raises_and_only_writes_known_or_copied_words(rewriter, turns):
    result = rewriter.rewrite(turns)
    utterance = clean_text(turns[-1].text)
    if utterance:
        assert result.text.strip()
    if not result.changed:
        assert result.text == utterance
        return
    context = {t.text.lower() for turn in turns
               for t in rewriter.features.tokenizer(clean_text(turn.text))}
    for word in result.tokens:
        assert word.lower() in rewriter.features.gen.stoi or word.lower() in context
    assert 0.0 <= result.confidence <= 1.0


def test_overlong_utterance_is_left_whole(rewriter):
    long_text = " ".join(["play their latest album"] * 100)
    result = rewriter.rewrite([Turn(BOT, "'Believer' is by Imagine Dragons."),
                               Turn(USER, long_text)])
    assert result.text == long_text and not result.changed


@settings(max_examples=60, deadline=None)
@given(events=st.lists(st.tuples(st.sampled_from(["user", "bot", "slot"]), hostile_text,
                                 st.integers(-5, 400), st.integers(-5, 400)), max_size=12),
       max_turns=st.integers(1, 10))
def test_context_builder_never_raises(events, max_turns):
    from rasa.shared.core.events import ActionExecuted, BotUttered, SlotSet, UserUttered
    from rasa.shared.core.trackers import DialogueStateTracker

    from cqr_rasa.plugin.context import context_turns

    tracker_events = [ActionExecuted("action_listen")]
    for kind, text, start, end in events:
        if kind == "user":
            entity = {"entity": "artist", "start": start, "end": end, "value": text[:5]}
            tracker_events.append(UserUttered(text, {"name": "x", "confidence": 1.0}, [entity],
                                              {"text": text, "entities": [entity]}))
        elif kind == "bot":
            tracker_events.append(BotUttered(text))
        else:
            tracker_events.append(SlotSet("artist", text))
    tracker = DialogueStateTracker.from_events("p", tracker_events)
    known = ValueMatcher({"Imagine Dragons": "artist", "": "song"})
    turns = context_turns(tracker, max_turns, known)
    assert len(turns) <= max_turns
    for turn in turns:
        assert turn.speaker in (USER, BOT)
        for span in turn.entities:
            assert 0 <= span.start < span.end <= len(turn.text)
