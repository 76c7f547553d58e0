"""K-fold cross-validation of the rewriter on one data file (tuning on the CQR dev split).

    .venv/bin/python scripts/cross_validate.py ../shared/data/cqr/cqr_kvret_dev_public.json \
        --folds 5 --protocol full --json bench_out/cv.json [--set key=value ...] [--models DIR]

`--set` overrides TrainConfig / RewriterConfig fields (e.g. --set swapped_copies=2).
`--models DIR` keeps each fold's trained rewriter in DIR (one subdirectory per data file,
protocol, seed and fold) and reuses the ones already there, so decoding settings (RewriterConfig
fields) can be compared without retraining; training settings only apply to folds that get
trained.
Prints the pooled report (every example scored once, by the fold that held it out).
"""
import argparse
import json
import random
import time
from dataclasses import fields
from pathlib import Path

from cqr_rasa.evaluation import evaluate_systems, format_table, heuristic, identity, per_example
from cqr_rasa.readers import read_examples
from cqr_rasa.rewriter import CONFIG_FILE, Rewriter, RewriterConfig
from cqr_rasa.training import TrainConfig, predict, train


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data", type=Path)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--protocol", default="full")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--models", type=Path)
    args = parser.parse_args()
    overrides = dict(item.split("=", 1) for item in args.set)
    train_kw, rewrite_kw = {}, {}
    for cls, target in ((TrainConfig, train_kw), (RewriterConfig, rewrite_kw)):
        for f in fields(cls):
            if f.name in overrides:
                target[f.name] = type(f.default)(overrides[f.name])
    examples = read_examples(args.data, args.protocol)
    order = list(range(len(examples)))
    random.Random(args.seed).shuffle(order)
    predictions = [""] * len(examples)
    started = time.perf_counter()
    for fold in range(args.folds):
        held = set(order[fold::args.folds])
        # the split depends on all of these: a fold model must never score examples it saw
        saved = (args.models / f"{args.data.stem}-{args.protocol}-seed{args.seed}-fold{fold + 1}"
                 f"of{args.folds}" if args.models else None)
        if saved is not None and (saved / CONFIG_FILE).is_file():
            trained = Rewriter.load(saved, **rewrite_kw)
        else:
            trained = train([e for i, e in enumerate(examples) if i not in held],
                            TrainConfig(**train_kw), RewriterConfig(**rewrite_kw), progress=False)
            if saved is not None:
                trained.save(saved)
        held_ids = sorted(held)
        for i, text in zip(held_ids, predict(trained, [examples[i] for i in held_ids])):
            predictions[i] = text
        print(f"fold {fold + 1}/{args.folds} done at {time.perf_counter() - started:.0f} s",
              flush=True)
    report = evaluate_systems(examples, {"model": lambda _: predictions,
                                         "identity": per_example(identity),
                                         "heuristic": per_example(heuristic)})
    report["settings"] = overrides
    rewrites = [i for i, e in enumerate(examples) if e.needs_rewrite]
    report["rewrites_only"] = evaluate_systems(
        [examples[i] for i in rewrites],
        {"model": lambda _: [predictions[i] for i in rewrites],
         "identity": per_example(identity)})["systems"]
    report["predictions"] = predictions
    print(format_table(report))
    print("on the examples that need a rewrite: BLEU model %.2f, identity %.2f" % (
        report["rewrites_only"]["model"]["bleu"], report["rewrites_only"]["identity"]["bleu"]))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
