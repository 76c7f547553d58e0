"""`cqr-rasa`: train, evaluate and benchmark rewriters. Argument parsing only."""
import argparse
import json
import os
import sys
from pathlib import Path
from typing import List, Optional

from cqr_rasa.readers import PROTOCOLS, DataError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cqr-rasa",
        description="Contextual query rewriting: train, evaluate and benchmark the "
                    "pointer-generator rewriter that the Rasa component uses.")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a rewriter on CQR JSON, JSONL or Rasa YAML")
    train.add_argument("--data", action="append", required=True, type=Path,
                       help="training file (repeat for several; format detected per file)")
    train.add_argument("--out", required=True, type=Path, help="directory to save the rewriter")
    train.add_argument("--epochs", type=int, default=None, help="maximum epochs (default 50)")
    train.add_argument("--seed", type=int, default=None, help="random seed (default 42)")
    train.add_argument("--threads", type=int, default=None,
                       help="torch threads (default 2; use 1 when other work shares the cores)")
    train.add_argument("--protocol", choices=PROTOCOLS, default="full",
                       help="context protocol for CQR JSON files (default full)")

    evaluate = commands.add_parser("evaluate", help="score a rewriter and the baselines")
    evaluate.add_argument("--model", required=True, type=Path, help="saved rewriter directory")
    evaluate.add_argument("--data", required=True, type=Path, help="evaluation file")
    evaluate.add_argument("--protocol", choices=PROTOCOLS, default="full",
                          help="context protocol for CQR JSON files (default full)")
    evaluate.add_argument("--json", type=Path, help="also write the report here")
    _decoding_options(evaluate)

    bench = commands.add_parser("benchmark", help="latency, throughput and memory vs. T5-small")
    bench.add_argument("--model", required=True, type=Path, help="saved rewriter directory")
    bench.add_argument("--json", type=Path, help="also write the figures here")
    bench.add_argument("--repeats", type=int, default=200, help="timed batch-1 rewrites")
    _decoding_options(bench)
    return parser


def _decoding_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--beam-size", type=int, default=None,
                         help="beam width instead of the model's saved one (1 = greedy)")
    command.add_argument("--eos-penalty", type=float, default=None,
                         help="beam search: taken from EOS's log-probability when ranking, so "
                              "longer rewrites can win (default: the model's saved one, 0)")


def _decoding(args: argparse.Namespace) -> dict:
    return {key: value for key, value in (("beam_size", args.beam_size),
                                          ("eos_penalty", args.eos_penalty)) if value is not None}


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    # TensorFlow (imported by transformers and the compiled decoder) prints no C++ INFO lines,
    # as under Rasa's commands
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        if args.command == "train":
            from cqr_rasa.commands import train_command

            train_command(args.data, args.out, args.epochs, args.seed, args.protocol,
                          args.threads)
        elif args.command == "evaluate":
            from cqr_rasa.commands import evaluate_command

            report = evaluate_command(args.model, args.data, args.protocol, _decoding(args))
            _write_json(args.json, report)
        else:
            from cqr_rasa.benchmark import run_benchmark

            _write_json(args.json, run_benchmark(args.model, repeats=args.repeats,
                                                 decoding=_decoding(args)))
    except (DataError, ValueError, OSError) as error:
        print(f"cqr-rasa {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


def _write_json(path: Optional[Path], report: dict) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2), encoding="utf-8")
        print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
