"""The example bot served for real: `rasa run --enable-api` on 127.0.0.1 (two processes sharing
Redis, see conftest.py), hostile input over the REST channel, the token guard of the HTTP API, a
1,000-turn conversation, a turn-by-turn switch between servers, and the bounded load test."""
import asyncio
import time
import uuid
from typing import Dict, List

import pytest
import requests

from cqr_rasa.plugin.loadtest import format_report, run_load

pytestmark = pytest.mark.slow

TOKEN = "serving-tests-token"  # the servers' --auth-token (tests/serving/conftest.py)

REFERENCE = "play their latest album"
HOSTILE: Dict[str, str] = {
    "empty": "",
    "whitespace only": " \t\n  ",
    "10,000 characters": (REFERENCE + " ") * 416 + "x" * 16,
    "emoji": REFERENCE + " \U0001F3B8\U0001F525",
    "right-to-left (Arabic)": "\u0634\u063a\u0644 \u0623\u0644\u0628\u0648\u0645\u0647\u0645 "
                              "\u0627\u0644\u0623\u062e\u064a\u0631",
    "right-to-left (Hebrew)": "\u05e0\u05d2\u05df \u05d0\u05ea \u05d4\u05d0\u05dc\u05d1\u05d5\u05dd",
    "control characters and NUL": "play\x00 their\x07 latest\x1b album\x7f",
    "non-English (German)": "spiel ihr neuestes Album",
    "non-English (Chinese)": "\u64ad\u653e\u4ed6\u4eec\u7684\u6700\u65b0\u4e13\u8f91",
    "intent payload with entities": '/play_album{"x": 1}',
    "intent payload, unknown intent": "/no_such_intent",
    "intent payload, broken JSON": '/play_album{"artist": ',
    "odd unicode spacing": "play\u00a0their\u2003latest\u200balbum\u2028",
}
# Rasa's UserMessage strips surrounding whitespace; everything else must reach the tracker as sent.
MAX_TURN_SECONDS = 30.0  # Rasa's own work grows with the tracker; the component's must not


def say(url: str, sender: str, text: str) -> requests.Response:
    return requests.post(f"{url}/webhooks/rest/webhook", json={"sender": sender, "message": text},
                         timeout=120)


def tracker(url: str, sender: str) -> Dict:
    response = requests.get(f"{url}/conversations/{sender}/tracker", params={"token": TOKEN},
                            timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def user_events(url: str, sender: str) -> List[Dict]:
    return [e for e in tracker(url, sender)["events"] if e["event"] == "user"]


def answered(response: requests.Response) -> List[str]:
    assert response.status_code == 200, response.text
    texts = [m["text"] for m in response.json() if m.get("text")]
    assert texts, f"no answer: {response.json()!r}"
    return texts


@pytest.fixture(scope="module")
def hostile_results(servers, pytestconfig):
    """Each hostile text, sent after "who sings believer" (so there is history to rewrite from)."""
    url = servers[0].url
    results = {}
    for name, text in HOSTILE.items():
        sender = f"hostile-{uuid.uuid4().hex[:8]}"
        answered(say(url, sender, "who sings believer"))
        started = time.perf_counter()
        response = say(url, sender, text)
        seconds = time.perf_counter() - started
        results[name] = (text, response, seconds, user_events(url, sender)[-1])
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print("\nhostile input | HTTP | seconds | rewrite | intent | answer")
        for name, (_, response, seconds, event) in results.items():
            rewrite = event["parse_data"].get("rewrite") or {}
            answer = "; ".join(m.get("text", "") for m in response.json()) \
                if response.status_code == 200 else response.text[:60]
            print(f"{name} | {response.status_code} | {seconds:.2f} | "
                  f"{rewrite.get('reason', 'not run (payload)')} -> "
                  f"{rewrite.get('rewritten_text', '')[:40]!r} | "
                  f"{event['parse_data']['intent'].get('name')} | {answer}")
    return results


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_input_gets_an_answer_and_keeps_its_text(hostile_results, servers, name):
    text, response, seconds, event = hostile_results[name]
    answered(response)
    assert event["text"] == text.strip()
    assert seconds < MAX_TURN_SECONDS
    rewrite = event["parse_data"].get("rewrite")
    if rewrite is not None:  # Rasa answers well-formed /intent payloads without running NLU
        assert rewrite["original_text"] == text.strip()
        assert rewrite["rewritten_text"].strip() or not text.strip()
    assert requests.get(f"{servers[0].url}/", timeout=10).status_code == 200  # still serving


def test_rewrites_keep_emoji_and_foreign_script(hostile_results):
    for name in ("emoji", "right-to-left (Arabic)", "non-English (Chinese)"):
        text, _, _, event = hostile_results[name]
        rewritten = event["parse_data"]["rewrite"]["rewritten_text"]
        for word in text.split():
            if not word.isascii():
                assert word in rewritten, (name, rewritten)


def test_unauthenticated_api_calls_are_refused(servers):
    url = f"{servers[0].url}/conversations/someone/tracker"
    assert requests.get(url, timeout=10).status_code == 401
    assert requests.get(url, params={"token": "wrong"}, timeout=10).status_code == 401
    events = f"{servers[0].url}/conversations/someone/tracker/events"
    assert requests.post(events, json=[], timeout=10).status_code == 401
    assert requests.get(url, params={"token": TOKEN}, timeout=10).status_code == 200


def test_a_thousand_turn_conversation_is_answered_in_bounded_time(servers, pytestconfig):
    url = servers[0].url
    sender = f"long-{uuid.uuid4().hex[:8]}"
    question = "who sings believer"
    past = []
    for _ in range(1000):
        past.append({"event": "user", "text": question, "parse_data": {
            "text": question, "intent": {"name": "ask_artist", "confidence": 1.0},
            "entities": [{"start": 10, "end": 18, "entity": "song", "value": "Believer"}]}})
        past.append({"event": "bot", "text": "'Believer' is by Imagine Dragons."})
    response = requests.post(f"{url}/conversations/{sender}/tracker/events",
                             params={"token": TOKEN}, json=past, timeout=120)
    assert response.status_code == 200, response.text
    # the same turn after one turn first: the NLU's first parse of a new text costs extra
    short = f"short-{uuid.uuid4().hex[:8]}"
    answered(say(url, short, question))
    started = time.perf_counter()
    answered(say(url, short, REFERENCE))
    short_seconds = time.perf_counter() - started
    short_rewrite = user_events(url, short)[-1]["parse_data"]["rewrite"]

    started = time.perf_counter()
    answers = answered(say(url, sender, REFERENCE))
    long_seconds = time.perf_counter() - started

    last = user_events(url, sender)
    assert len(last) == 1001 and last[-1]["text"] == REFERENCE
    rewrite = last[-1]["parse_data"]["rewrite"]
    assert rewrite["applied"] and "Imagine Dragons" in rewrite["rewritten_text"]
    assert answers == ["Playing the latest album by Imagine Dragons."]
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(f"\nturn after 1,000 turns: {long_seconds:.2f} s, of which the component "
              f"{rewrite['milliseconds']} ms; after 1 turn: {short_seconds:.2f} s, of which the "
              f"component {short_rewrite['milliseconds']} ms")
    assert long_seconds < MAX_TURN_SECONDS
    assert rewrite["milliseconds"] < 250  # the context window caps the component's work


def test_turns_alternating_between_servers_resolve_references(servers):
    """Redis holds the tracker and the lock: each server sees what the other one answered."""
    sender = f"switch-{uuid.uuid4().hex[:8]}"
    a, b = servers[0].url, servers[1].url
    script = [(a, "who sings thunder", "'Thunder' is by Imagine Dragons."),
              (b, REFERENCE, "Playing the latest album by Imagine Dragons."),
              (a, "who sings yellow", "'Yellow' is by Coldplay."),
              (b, REFERENCE, "Playing the latest album by Coldplay.")]
    for url, text, answer in script:
        assert answered(say(url, sender, text)) == [answer]
    events = user_events(a, sender)
    assert [e["text"] for e in events] == [text for _, text, _ in script]
    assert [e["parse_data"]["rewrite"]["rewritten_text"] for e in events[1::2]] == [
        "play Imagine Dragons' latest album", "play Coldplay's latest album"]
    assert user_events(b, sender) == events


def test_load_fifty_conversations_of_ten_turns(servers, pytestconfig):
    report = asyncio.run(run_load([s.url for s in servers], TOKEN, conversations=50, turns=10))
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print("\nload: " + format_report(report))
    assert report["errors"] == []
    assert report["turns_answered"] == 500
