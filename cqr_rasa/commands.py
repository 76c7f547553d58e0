"""What `cqr-rasa train` and `cqr-rasa evaluate` do, as importable functions."""
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from cqr_rasa.dialogue import Example
from cqr_rasa.evaluation import evaluate_systems, format_table, heuristic, identity, per_example
from cqr_rasa.readers import read_examples
from cqr_rasa.rewriter import Rewriter, describe
from cqr_rasa.training import TrainConfig, predict, train


def load_all(paths: Sequence[Path], protocol: str = "full") -> List[Example]:
    """Reads and concatenates every file (formats may differ)."""
    examples: List[Example] = []
    for path in paths:
        examples.extend(read_examples(path, protocol))
    return examples


def train_command(data: Sequence[Path], out: Path, epochs: Optional[int] = None,
                  seed: Optional[int] = None, protocol: str = "full",
                  threads: Optional[int] = None) -> Rewriter:
    examples = load_all(data, protocol)
    config = TrainConfig()
    if epochs is not None:
        config.epochs = epochs
    if seed is not None:
        config.seed = seed
    if threads is not None:
        config.threads = threads
    config.__post_init__()
    started = time.perf_counter()
    rewriter = train(examples, config)
    rewriter.save(out)
    sizes = ", ".join(f"{k} {v:,}" for k, v in describe(rewriter).items())
    print(f"trained on {len(examples)} examples in {time.perf_counter() - started:.0f} s "
          f"({sizes}); saved to {out}")
    return rewriter


def evaluate_command(model: Path, data: Path, protocol: str = "full",
                     decoding: Optional[Dict] = None) -> Dict:
    """`decoding` overrides the model's saved `RewriterConfig` fields (e.g. `beam_size`)."""
    rewriter = Rewriter.load(model, **(decoding or {}))
    examples = read_examples(data, protocol)
    report = evaluate_systems(examples, {
        "model": lambda exs: predict(rewriter, exs),
        "identity": per_example(identity),
        "heuristic": per_example(heuristic),
    })
    report["decoding"] = rewriter.config.decoding()
    print(format_table(report))
    return report
