"""A bounded load test of bots that run the component, over Rasa's REST channel and HTTP API.

    python -m cqr_rasa.plugin.loadtest --url http://127.0.0.1:5005 [--url ...] --token TOKEN
        [--conversations 50] [--turns 10] [--json OUT]

Every conversation talks to the example bot with references ("play their latest album", "how's
the traffic there?") and its own mix of songs, cities and places; its turns go round-robin over the
`--url`s (several servers sharing a tracker store). Afterwards each conversation's tracker is read
back and checked: every turn was answered, kept its original text, and every word a rewrite
inserted was copied from that conversation's own history (no cross-talk). Traffic goes only to the
given URLs, every request has a timeout and the whole run a deadline, so it always ends.
"""
import argparse
import asyncio
import json
import re
import statistics
import time
import uuid
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import aiohttp

SONGS = ["Believer", "Thunder", "Yellow", "Viva la Vida", "Shape of You", "Bad Guy",
         "Bohemian Rhapsody", "Rolling in the Deep", "Someone Like You", "Shake It Off",
         "Blinding Lights", "Levitating", "Hey Jude", "Wonderwall", "Mamma Mia"]
CITIES = ["Boston", "Seattle", "Chicago", "Denver", "Miami", "San Francisco"]
PLACES = ["Costco", "the airport", "Trader Joes", "Target", "Whole Foods", "Valero", "Chipotle"]
TURNS = ["who sings {song}", "play their latest album", "what's the weather in {city}",
         "what about tomorrow?", "navigate to {place}", "how's the traffic there?", "thanks",
         "play {song2}", "who sings it?", "bye"]


def script(index: int, turns: int) -> List[str]:
    """The user turns of conversation `index`: references, with values varying by conversation."""
    values = {"song": SONGS[index % len(SONGS)], "song2": SONGS[(index + 5) % len(SONGS)],
              "city": CITIES[index % len(CITIES)], "place": PLACES[index % len(PLACES)]}
    return [TURNS[k % len(TURNS)].format(**values).lower() for k in range(turns)]


def _words(text: Optional[str]) -> set:
    return set(re.findall(r"\w+", (text or "").lower()))


def check_tracker(tracker: Dict, sent: Sequence[str]) -> List[str]:
    """Problems in one conversation's tracker: lost or altered user texts, unanswered turns, and
    inserted words that its own earlier turns do not contain."""
    problems = []
    user_events = [e for e in tracker.get("events", []) if e.get("event") == "user"]
    texts = [e.get("text") for e in user_events]
    if texts != list(sent):
        problems.append(f"user texts in the tracker {texts!r} differ from those sent {sent!r}")
    seen: set = set()  # words of this conversation so far: user texts, rewrites, bot texts
    for event in tracker.get("events", []):
        kind = event.get("event")
        if kind == "bot":
            seen |= _words(event.get("text"))
        elif kind == "user":
            parse = event.get("parse_data") or {}
            rewrite = parse.get("rewrite") or {}
            for inserted in rewrite.get("inserted", []):
                source = (inserted.get("from_turn") or {}).get("text")
                if source is not None and not _words(source) <= seen:
                    problems.append(f"{event.get('text')!r}: inserted {inserted.get('word')!r} "
                                    f"from {source!r}, which this conversation never had")
            seen |= _words(event.get("text")) | _words(parse.get("text"))
    return problems


class Run:
    """One load run's requests and their outcome."""

    def __init__(self, urls: Sequence[str], token: str, timeout: float) -> None:
        self.urls = [u.rstrip("/") for u in urls]
        self.token = token
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.latencies: List[float] = []
        self.errors: List[str] = []
        self.turns = 0

    async def conversation(self, session: aiohttp.ClientSession, index: int, turns: int) -> None:
        sender = f"load-{index}-{uuid.uuid4().hex[:8]}"
        sent = script(index, turns)
        for k, text in enumerate(sent):
            url = self.urls[(index + k) % len(self.urls)]
            started = time.perf_counter()
            try:
                async with session.post(f"{url}/webhooks/rest/webhook",
                                        json={"sender": sender, "message": text}) as response:
                    body = await response.json(content_type=None)
                    status = response.status
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as error:
                self.errors.append(f"{sender} turn {k} {text!r}: {error!r}")
                return
            self.latencies.append((time.perf_counter() - started) * 1000.0)
            self.turns += 1
            if status != 200 or not any(m.get("text") for m in body or []):
                self.errors.append(f"{sender} turn {k} {text!r}: HTTP {status}, answer {body!r}")
        tracker_url = f"{self.urls[index % len(self.urls)]}/conversations/{sender}/tracker"
        try:
            async with session.get(tracker_url, params={"token": self.token}) as response:
                tracker = await response.json(content_type=None)
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as error:
            self.errors.append(f"{sender}: tracker read failed: {error!r}")
            return
        self.errors += [f"{sender}: {p}" for p in check_tracker(tracker, sent)]


async def run_load(urls: Sequence[str], token: str, conversations: int = 50, turns: int = 10,
                   request_timeout: float = 120.0, deadline: float = 1200.0) -> Dict:
    """Plays `conversations` concurrent conversations of `turns` turns; returns the figures."""
    run = Run(urls, token, request_timeout)
    started = time.perf_counter()
    async with aiohttp.ClientSession(timeout=run.timeout) as session:
        tasks = [asyncio.ensure_future(run.conversation(session, i, turns))
                 for i in range(conversations)]
        finished, unfinished = await asyncio.wait(tasks, timeout=deadline)
        for task in unfinished:
            task.cancel()
        for task in finished:
            if task.exception() is not None:
                run.errors.append(f"conversation failed: {task.exception()!r}")
        if unfinished:
            run.errors.append(f"{len(unfinished)} conversations unfinished after {deadline} s")
    elapsed = time.perf_counter() - started
    ordered = sorted(run.latencies) or [0.0]
    return {
        "servers": list(run.urls), "conversations": conversations, "turns_per_conversation": turns,
        "turns_answered": run.turns, "errors": run.errors, "seconds": round(elapsed, 1),
        "turns_per_second": round(run.turns / elapsed, 2) if elapsed else 0.0,
        "p50_ms": round(statistics.median(ordered), 1),
        "p95_ms": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 1),
    }


def format_report(report: Dict) -> str:
    return (f"{report['conversations']} conversations x {report['turns_per_conversation']} turns "
            f"over {len(report['servers'])} server(s): {report['turns_answered']} turns answered in "
            f"{report['seconds']} s ({report['turns_per_second']}/s), turn latency p50 "
            f"{report['p50_ms']} ms, p95 {report['p95_ms']} ms, {len(report['errors'])} errors")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", action="append", required=True,
                        help="a `rasa run --enable-api` server (repeat for several)")
    parser.add_argument("--token", required=True, help="the servers' --auth-token")
    parser.add_argument("--conversations", type=int, default=50)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    report = asyncio.run(run_load(args.url, args.token, args.conversations, args.turns))
    print(format_report(report))
    for error in report["errors"][:20]:
        print("  " + error)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2), encoding="utf-8")
    raise SystemExit(1 if report["errors"] else 0)


if __name__ == "__main__":
    main()
