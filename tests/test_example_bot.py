"""The scripted conversations of example_bot/tests/conversations.yml against the trained example
bot, and the same conversations with the rewriter removed from its pipeline (the ablation)."""
import asyncio
import uuid
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
import yaml
from rasa.core.agent import Agent
from rasa.shared.core.events import UserUttered

pytestmark = pytest.mark.slow

SCRIPTS = Path(__file__).resolve().parents[1] / "example_bot" / "tests"
CONVERSATIONS = SCRIPTS / "conversations.yml"
LONG_CONVERSATIONS = SCRIPTS / "long_conversations.yml"


def load_conversations(path: Path = CONVERSATIONS) -> List[Dict]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data["conversations"]


def load_long_conversations() -> List[Dict]:
    """long_conversations.yml in the shape of conversations.yml: only the last turn has an
    expected intent (and so is checked)."""
    return [{"name": c["name"],
             "turns": [{"user": text} for text in c["turns"][:-1]]
             + [{"user": c["turns"][-1], **c["last"]}]}
            for c in load_conversations(LONG_CONVERSATIONS)]


def turn_errors(expected: Dict, parse: Dict) -> List[str]:
    """What differs between a scripted turn and the bot's final parse of it."""
    errors = []
    intent = parse["intent"]["name"]
    if intent != expected["intent"]:
        errors.append(f"intent {intent!r} != {expected['intent']!r}")
    if "entities" in expected:
        got = {e["entity"]: e["value"] for e in parse.get("entities", [])}
        want = {k: str(v) for k, v in (expected["entities"] or {}).items()}
        if got != want:
            errors.append(f"entities {got} != {want}")
    return errors


def run_conversations(agent: Agent, conversations: List[Dict]) -> Tuple[int, int, List[str]]:
    """Plays every conversation; returns (turns right, turns checked, failure descriptions).
    Turns without an expected intent are played but not checked."""
    right, total, failures = 0, 0, []

    async def play(conversation: Dict) -> None:
        nonlocal right, total
        sender = uuid.uuid4().hex
        for turn in conversation["turns"]:
            await agent.handle_text(turn["user"], sender_id=sender)
        tracker = await agent.tracker_store.retrieve(sender)
        parses = [e.parse_data for e in tracker.events if isinstance(e, UserUttered)]
        for turn, parse in zip(conversation["turns"], parses):
            if "intent" not in turn:
                continue
            total += 1
            errors = turn_errors(turn, parse)
            if errors:
                rewritten = parse.get("rewrite", {}).get("rewritten_text", parse["text"])
                failures.append(f"{conversation['name']}: {turn['user']!r} -> {rewritten!r}: "
                                f"{'; '.join(errors)}")
            else:
                right += 1

    loop = asyncio.new_event_loop()
    try:
        for conversation in conversations:
            loop.run_until_complete(play(conversation))
    finally:
        loop.close()
    return right, total, failures


def test_conversation_files_are_well_formed():
    conversations = load_conversations()
    assert len(conversations) >= 30
    long = load_conversations(LONG_CONVERSATIONS)
    names = [c["name"] for c in conversations + long]
    assert len(set(names)) == len(names)
    for conversation in conversations:
        assert conversation["turns"], conversation["name"]
        for turn in conversation["turns"]:
            assert isinstance(turn["user"], str) and isinstance(turn["intent"], str)
    for conversation in long:
        assert len(conversation["turns"]) >= 4, conversation["name"]
        assert all(isinstance(text, str) for text in conversation["turns"]), conversation["name"]
        assert set(conversation["last"]) == {"intent", "entities"}, conversation["name"]


@pytest.fixture(scope="module")
def scores(example_model, example_model_without_rewriter, pytestconfig):
    """{"scripted" | "long": ((right, checked, failures) with the rewriter, the same without)}"""
    agents = [Agent.load(str(example_model)), Agent.load(str(example_model_without_rewriter))]
    results = {name: tuple(run_conversations(agent, conversations) for agent in agents)
               for name, conversations in (("scripted", load_conversations()),
                                           ("long", load_long_conversations()))}
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():  # the figures belong in the test log
        for name, what in (("scripted", "turns"), ("long", "last turns of long conversations")):
            (right, total, failures), (plain_right, _, _) = results[name]
            print(f"\nexample bot, {what}: {right}/{total} right with the rewriter, "
                  f"{plain_right}/{total} without it; wrong with it:\n  " + "\n  ".join(failures))
    return results


# Every scripted turn must come out right. Training is seeded (DIET, TED, the rewriter) and gave
# the same turns from one run to the next; a miss is a regression to look at (it is printed).
MIN_ABLATION_GAP = 0.2
# The long conversations are harder than most of data/rewrites.yml: on 2026-11-29, 13 of 16 came
# out right with the component's random_seed 42 and 12-13 over seeds 42, 7, 1 and 2 (8-11
# before `copy_intent_entities_only`, 5-9 before the long-* rewrites), against 1 without the
# rewriter; 12 with seed 42 once rewrites dropping the user's words were refused (one garbled
# rewrite DIET had read right). Fewer than 10 is a regression.
MIN_LONG_RIGHT = 10


def test_scripted_turns_are_right_with_the_rewriter(scores):
    right, total, failures = scores["scripted"][0]
    assert right == total, f"{right}/{total} turns right; failures:\n" + "\n".join(failures)


def test_without_the_rewriter_the_bot_is_clearly_worse(scores):
    (right, total, _), (plain_right, plain_total, _) = scores["scripted"]
    assert total == plain_total
    assert plain_right <= right - MIN_ABLATION_GAP * total


def test_long_mixed_domain_conversations(scores):
    (right, total, failures), (plain_right, _, _) = scores["long"]
    assert right >= MIN_LONG_RIGHT and right > plain_right, (
        f"{right}/{total} last turns right ({plain_right} without the rewriter); failures:\n"
        + "\n".join(failures))
