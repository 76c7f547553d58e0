"""What the component costs a bot: `parse_message` latency with and without it, and memory.

    python -m cqr_rasa.plugin.benchmark --with MODEL.tar.gz --without MODEL.tar.gz [--json OUT]

Both models must be trained from the same bot, one without the rewriter in its pipeline.
"""
import argparse
import asyncio
import json
import logging
import resource
import statistics
import time
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from rasa.core.agent import Agent
from rasa.core.channels.channel import UserMessage
from rasa.shared.core.events import ActionExecuted, BotUttered, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.utils.log_utils import configure_structlog

HISTORY: List[Tuple[str, str]] = [
    ("who sings believer", "'Believer' is by Imagine Dragons."),
]
UNCHANGED = "thanks"
REWRITTEN = "play their latest album"


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2 ** 20


async def _tracker(agent: Agent, history: Sequence[Tuple[str, str]]) -> DialogueStateTracker:
    """A tracker holding the history as the bot really parsed it."""
    events = [ActionExecuted("action_listen")]
    tracker = DialogueStateTracker.from_events("bench", events)
    for user, bot in history:
        parse = await agent.processor.parse_message(UserMessage(user), tracker)
        tracker.update(UserUttered(user, parse["intent"], parse["entities"], parse))
        tracker.update(BotUttered(bot))
        tracker.update(ActionExecuted("action_listen"))
    return tracker


async def _interleaved(agents: Dict[str, Agent], text: str,
                       trackers: Dict[str, DialogueStateTracker], repeats: int
                       ) -> Dict[str, List[float]]:
    """Latencies of each agent parsing `text`, the agents taking turns call by call, so a noisy
    neighbour on the machine slows both alike instead of whichever ran during the noise."""
    for label, agent in agents.items():
        for _ in range(3):
            await agent.processor.parse_message(UserMessage(text), trackers[label])
    out: Dict[str, List[float]] = {label: [] for label in agents}
    for _ in range(repeats):
        for label, agent in agents.items():
            started = time.perf_counter()
            await agent.processor.parse_message(UserMessage(text), trackers[label])
            out[label].append((time.perf_counter() - started) * 1000)
    return out


async def measure(with_model: Path, without_model: Path, repeats: int = 100) -> Dict:
    rss0 = _rss_mb()
    plain = Agent.load(str(without_model))
    rss1 = _rss_mb()
    full = Agent.load(str(with_model))
    rss2 = _rss_mb()
    report: Dict = {"repeats": repeats}
    for name, text in (("unchanged_turn", UNCHANGED), ("rewritten_turn", REWRITTEN)):
        agents = {"without": plain, "with": full}
        trackers = {label: await _tracker(agent, HISTORY) for label, agent in agents.items()}
        timings = {label: statistics.median(values) for label, values in
                   (await _interleaved(agents, text, trackers, repeats)).items()}
        parse = await full.processor.parse_message(UserMessage(text), await _tracker(full, HISTORY))
        report[name] = {"text": text, "rewrite": parse.get("rewrite", {}).get("rewritten_text"),
                        "without_ms": round(timings["without"], 2),
                        "with_ms": round(timings["with"], 2),
                        "ratio": round(timings["with"] / timings["without"], 2)}
    report["memory_mb"] = {"bot_without_component": round(rss1 - rss0, 1),
                           "bot_with_component": round(rss2 - rss1, 1),
                           "added_by_component": round((rss2 - rss1) - (rss1 - rss0), 1)}
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--with", dest="with_model", type=Path, required=True)
    parser.add_argument("--without", dest="without_model", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    # as `rasa run` does: otherwise Rasa prints a debug line for every parse being timed
    configure_structlog(logging.WARNING)
    report = asyncio.run(measure(args.with_model, args.without_model, args.repeats))
    for name in ("unchanged_turn", "rewritten_turn"):
        row = report[name]
        print(f"{name:<15} {row['text']!r:<28} without {row['without_ms']:>7} ms   "
              f"with {row['with_ms']:>7} ms   ratio {row['ratio']}x   -> {row['rewrite']!r}")
    print(f"memory: {report['memory_mb']}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
