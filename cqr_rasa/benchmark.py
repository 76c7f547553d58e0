"""Latency, throughput and memory of the rewriter, next to a T5-small-sized transformer rewriter.

Both decode greedily on the CPU from the same dialogue; T5 is built from a `T5Config` with random
weights (nothing is downloaded) and writes as many tokens as the rewriter's output has.
"""
import os
import platform
import resource
import statistics
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Union

import torch

from cqr_rasa.dialogue import BOT, USER, EntitySpan, Turn
from cqr_rasa.rewriter import Rewriter, describe


def benchmark_dialogue() -> List[Turn]:
    """A six-turn in-car dialogue whose last utterance refers back to two earlier turns."""

    def turn(speaker: str, text: str, intent: str, *spans: tuple) -> Turn:
        entities = [EntitySpan(text.index(v), text.index(v) + len(v), e) for v, e in spans]
        return Turn(speaker, text, intent, entities)

    return [
        turn(USER, "find me the nearest gas station with no traffic on the way", "navigate",
             ("gas station", "poi_type"), ("no traffic", "traffic_info")),
        turn(BOT, "The nearest gas station is Valero at 200 Alester Ave, 7 miles away, and there "
                  "is no traffic on the route right now.", "navigate",
             ("Valero", "poi"), ("200 Alester Ave", "address"), ("7 miles away", "distance")),
        turn(USER, "what is the weather going to be like in Palo Alto this weekend", "weather",
             ("Palo Alto", "location"), ("this weekend", "date")),
        turn(BOT, "It will be sunny in Palo Alto on Saturday with a high of 80F and cloudy on "
                  "Sunday with a low of 60F.", "weather",
             ("Palo Alto", "location"), ("Saturday", "date"), ("Sunday", "date")),
        turn(USER, "remind me to pick up my friend Jill at her house tomorrow at 5 pm", "schedule",
             ("Jill", "party"), ("tomorrow", "date"), ("5 pm", "time")),
        turn(USER, "ok give me directions to the gas station there and then take me to her house",
             "navigate"),
    ]


def _percentile(values: List[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _time(call: Callable[[], object], repeats: int, warmup: int = 3) -> List[float]:
    for _ in range(warmup):
        call()
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        timings.append((time.perf_counter() - started) * 1000.0)
    return timings


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_benchmark(model_dir: Union[str, Path], repeats: int = 200, batch_size: int = 32,
                  t5_repeats: int = 10, verbose: bool = True,
                  decoding: Optional[Dict] = None) -> Dict:
    """Measures both rewriters; returns (and prints) the figures. `decoding` overrides the
    model's saved `RewriterConfig` fields (e.g. `beam_size`)."""
    rss_before = _peak_rss_mb()
    rewriter = Rewriter.load(model_dir, **(decoding or {}))
    rss_model = _peak_rss_mb()
    dialogue = benchmark_dialogue()
    window, _ = rewriter.window(dialogue)
    source_tokens = len(rewriter.features.encode_source(window).words)
    output = rewriter.rewrite(dialogue)  # also compiles its XLA program before the timing
    ours = _time(lambda: rewriter.rewrite(dialogue), repeats)
    batch = [dialogue] * batch_size
    started = time.perf_counter()
    rounds = max(1, repeats // batch_size)
    for _ in range(rounds):
        rewriter.rewrite_batch(batch)
    throughput = rounds * batch_size / (time.perf_counter() - started)
    rss_peak = _peak_rss_mb()
    out_tokens = max(1, len(rewriter.features.tokenizer(output.text)))
    t5 = _t5_timings(source_tokens, out_tokens, t5_repeats)
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, default threads for both "
                   f"(XLA for the rewriter's one dialogue, OpenBLAS for its batches, "
                   f"{torch.get_num_threads()} torch for T5), "
                   f"Python {platform.python_version()}, torch {torch.__version__}",
        "model": describe(rewriter),
        "input_tokens": source_tokens,
        "output_tokens": out_tokens,
        "output_text": output.text,
        "decoding": rewriter.config.decoding(),
        "rewriter": {"p50_ms": round(statistics.median(ours), 2),
                     "p95_ms": round(_percentile(ours, 0.95), 2),
                     "throughput_batch32_per_s": round(throughput, 1),
                     "load_rss_mb": round(rss_model - rss_before, 1),
                     "peak_rss_mb": round(rss_peak, 1)},
        "t5_small": t5,
        "speedup_p50": round(t5["p50_ms"] / statistics.median(ours), 1),
    }
    if verbose:
        print(format_benchmark(report))
    return report


def _t5_timings(source_tokens: int, out_tokens: int, repeats: int) -> Dict:
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    config = T5Config(vocab_size=32128, d_model=512, d_kv=64, d_ff=2048, num_layers=6,
                      num_decoder_layers=6, num_heads=8, decoder_start_token_id=0,
                      pad_token_id=0, eos_token_id=1)
    model = T5ForConditionalGeneration(config).eval()
    inputs = torch.randint(2, config.vocab_size, (1, source_tokens))

    def generate() -> None:
        with torch.no_grad():
            model.generate(inputs, max_new_tokens=out_tokens, min_new_tokens=out_tokens,
                           do_sample=False, num_beams=1, use_cache=True)

    timings = _time(generate, repeats, warmup=1)
    return {"parameters": sum(p.numel() for p in model.parameters()),
            "p50_ms": round(statistics.median(timings), 2),
            "p95_ms": round(_percentile(timings, 0.95), 2)}


def format_benchmark(report: Dict) -> str:
    ours, t5 = report["rewriter"], report["t5_small"]
    return "\n".join([
        f"machine: {report['machine']}",
        f"dialogue: 6 turns, {report['input_tokens']} tokens in, {report['output_tokens']} out: "
        f"{report['output_text']!r}",
        f"decoding: beam {report['decoding']['beam_size']} (1 = greedy), "
        f"eos_penalty {report['decoding']['eos_penalty']}",
        f"{'system':<18}{'params':>12}{'p50 ms':>10}{'p95 ms':>10}",
        f"{'pointer-generator':<18}{report['model']['parameters']:>12,}{ours['p50_ms']:>10}"
        f"{ours['p95_ms']:>10}",
        f"{'T5-small (random)':<18}{t5['parameters']:>12,}{t5['p50_ms']:>10}{t5['p95_ms']:>10}",
        f"speed-up at p50: {report['speedup_p50']}x; rewriter throughput at batch 32: "
        f"{ours['throughput_batch32_per_s']}/s; peak RSS grew {ours['load_rss_mb']} MB while "
        f"loading the rewriter (spaCy tokenizer included); process peak RSS {ours['peak_rss_mb']} MB",
    ])
