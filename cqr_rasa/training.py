"""Training loop with a validation split and early stopping."""
import copy
import logging
import random
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from tqdm import tqdm

from cqr_rasa.augment import swap_entities, value_pool
from cqr_rasa.dialogue import Example
from cqr_rasa.features import Batch, FeatureSpace, Source, make_batch
from cqr_rasa.model import NetworkConfig, PointerGenerator, torch_threads
from cqr_rasa.rewriter import Rewriter, RewriterConfig, droppable_words

logger = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Training settings; the defaults were chosen by cross-validation on the CQR dev split."""

    epochs: int = 50  # upper bound; early stopping usually ends sooner
    batch_size: int = 32
    learning_rate: float = 2e-3
    seed: int = 42
    validation_fraction: float = 0.1  # share of examples held out for early stopping
    # epochs without validation improvement before stopping: the validation split is small and
    # its loss noisy; 10 (with 50 epochs) against 5 (with 30) gave +4.0 and +2.2 greedy BLEU in
    # 5-fold cross-validation on two fold splits of the CQR dev split
    patience: int = 10
    alternatives_per_example: int = 1  # extra targets sampled per epoch from `alternatives`
    swapped_copies: int = 1  # entity-swapped copies of each example per epoch
    coverage_weight: float = 0.5
    # decay of an exponential moving average of the weights over training steps, which is what
    # gets validated and kept (0 = off; used only with a validation split): 0.99 against off gave
    # +1.5 and +1.6 greedy BLEU in 5-fold cross-validation on two fold splits (0.995: +0.6)
    ema_decay: float = 0.99
    rewrite_weight: float = 1.0
    hidden: int = 128
    word_dim: int = 64
    attention: int = 32
    dropout: float = 0.25
    # share of the decoder's previous-word inputs replaced by UNK in training: 0.1 against 0
    # gave +0.1 to +3.7 greedy BLEU in 5-fold cross-validation on three fold splits of the CQR
    # dev split (slot F1 -0.014 to +0.025; `online` protocol +0.7 and +1.1 BLEU on two)
    word_dropout: float = 0.1
    gen_min_count: int = 3
    # torch intra-op threads while training (at most the machine's cores): on an idle 2-core
    # machine an epoch on the CQR dev split took 10.0 s with 2 and 18.0 s with 1; with another
    # busy process on one core, 46.9 s with 2 and 15.3 s with 1. Set 1 on a shared machine.
    threads: int = 2

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.threads < 1:
            raise ValueError("`epochs`, `batch_size` and `threads` must be >= 1.")
        if not 0.0 <= self.word_dropout < 1.0:
            raise ValueError(f"`word_dropout` must be in [0, 1), got {self.word_dropout}.")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError(f"`validation_fraction` must be in [0, 1), "
                             f"got {self.validation_fraction}.")


Item = Tuple[Source, str, bool]  # encoded dialogue, target text, whether it needs a rewrite


def train(examples: Sequence[Example], config: Optional[TrainConfig] = None,
          rewriter_config: Optional[RewriterConfig] = None, progress: bool = True,
          initial: Optional[Rewriter] = None,
          extra_values: Optional[Dict[str, List[str]]] = None) -> Rewriter:
    """Trains a rewriter on `examples` (fine-tunes `initial` when given, keeping its vocabulary).

    Entity swapping draws replacement values from the examples' own spans plus `extra_values`
    (entity type -> values, e.g. a bot's NLU entity examples).
    """
    config = config or TrainConfig()
    with torch_threads(config.threads):
        return _train(examples, config, rewriter_config, progress, initial, extra_values or {})


def _train(examples: Sequence[Example], config: TrainConfig,
           rewriter_config: Optional[RewriterConfig], progress: bool,
           initial: Optional[Rewriter], extra_values: Dict[str, List[str]]) -> Rewriter:
    if not examples:
        raise ValueError("No training examples: give at least one dialogue with a rewrite.")
    rng = random.Random(config.seed)
    torch.manual_seed(config.seed)
    rewriter_config = rewriter_config or RewriterConfig()
    shuffled = list(examples)
    rng.shuffle(shuffled)
    n_val = int(len(shuffled) * config.validation_fraction)
    val, trn = shuffled[:n_val], shuffled[n_val:]
    window = rewriter_config.max_history_turns + 1
    if initial is None:
        features = FeatureSpace.build(
            ((e.turns[-window:], [e.rewrite] + e.alternatives) for e in trn),
            gen_min_count=config.gen_min_count)
        network = PointerGenerator(NetworkConfig(
            len(features.words), len(features.gen), len(features.intents), len(features.types),
            word_dim=config.word_dim, hidden=config.hidden, attention=config.attention,
            dropout=config.dropout))
    else:
        features, network = initial.features, copy.deepcopy(initial.network)
    droppable = droppable_words(examples, features)
    if initial is not None and initial.droppable:
        droppable |= initial.droppable
    encode = lambda e: features.encode_source(e.turns[-window:])  # noqa: E731
    originals = [(e, encode(e)) for e in trn]
    pool = value_pool(trn, extra_values)
    val_items = [(encode(e), e.rewrite, e.needs_rewrite) for e in val]
    optimizer = torch.optim.Adam(network.parameters(), lr=config.learning_rate)
    # a moving average of the weights, validated and kept instead of them (needs validation)
    averaged = copy.deepcopy(network) if config.ema_decay and val_items else None
    judged = network if averaged is None else averaged
    best_loss, best_state, stale = float("inf"), copy.deepcopy(network.state_dict()), 0
    bar = tqdm(range(config.epochs), desc="training rewriter", unit="epoch", disable=not progress)
    for epoch in bar:
        items = _epoch_items(originals, pool, config, encode, rng)
        network.train()
        total = 0.0
        for batch in _batches(features, _bucketed(items, config.batch_size, rng),
                              config.batch_size):
            losses = network(batch, config.word_dropout)
            loss = (losses.nll + config.coverage_weight * losses.coverage
                    + config.rewrite_weight * losses.rewrite)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(network.parameters(), 5.0)
            optimizer.step()
            if averaged is not None:
                with torch.no_grad():
                    for mean, param in zip(averaged.parameters(), network.parameters()):
                        mean.lerp_(param, 1.0 - config.ema_decay)
            total += loss.item() * batch.targets.size(0)
        train_loss = total / max(1, len(items))
        val_loss = (_evaluate_loss(judged, features, val_items, config) if val_items
                    else train_loss)
        bar.set_postfix(train=f"{train_loss:.3f}", val=f"{val_loss:.3f}")
        logger.debug("epoch %d train %.4f val %.4f", epoch + 1, train_loss, val_loss)
        if val_loss < best_loss - 1e-4:
            best_loss, best_state, stale = val_loss, copy.deepcopy(judged.state_dict()), 0
        else:
            stale += 1
            if stale >= config.patience:
                break
    network.load_state_dict(best_state)
    return Rewriter(features, network.eval(), rewriter_config, droppable)


def _epoch_items(originals: Sequence[Tuple[Example, Source]], pool, config: TrainConfig,
                 encode: Callable[[Example], Source], rng: random.Random) -> List[Item]:
    """The epoch's (source, target, needs_rewrite) items: originals, swapped copies, alternatives."""
    items: List[Item] = []
    for example, source in originals:
        variants = [(example, source)]
        for _ in range(config.swapped_copies):
            swapped = swap_entities(example, pool, rng)
            variants.append((swapped, source if swapped is example else encode(swapped)))
        for variant, variant_source in variants:
            k = min(config.alternatives_per_example, len(variant.alternatives))
            for target in [variant.rewrite] + rng.sample(variant.alternatives, k):
                items.append((variant_source, target, variant.needs_rewrite))
    return items


def _bucketed(items: List[Item], size: int, rng: random.Random) -> List[Item]:
    """Shuffled items, ordered so each run of `size` has similar source lengths (less padding)."""
    rng.shuffle(items)
    chunks = []
    for start in range(0, len(items), size * 16):
        pool = sorted(items[start:start + size * 16], key=lambda item: len(item[0].words))
        chunks.extend(pool[i:i + size] for i in range(0, len(pool), size))
    rng.shuffle(chunks)
    return [item for chunk in chunks for item in chunk]


def _batches(features: FeatureSpace, items: Sequence[Item], size: int) -> Iterator[Batch]:
    for start in range(0, len(items), size):
        chunk = items[start:start + size]
        yield make_batch([s for s, _, _ in chunk],
                         [features.encode_target(t, s) for s, t, _ in chunk],
                         [flag for _, _, flag in chunk])


@torch.no_grad()
def _evaluate_loss(network: PointerGenerator, features: FeatureSpace, items: Sequence[Item],
                   config: TrainConfig) -> float:
    network.eval()
    total = 0.0
    for batch in _batches(features, items, config.batch_size):
        losses = network(batch)
        total += float(losses.nll + config.rewrite_weight * losses.rewrite) * batch.targets.size(0)
    return total / len(items)


def predict(rewriter: Rewriter, examples: Sequence[Example], batch_size: int = 32,
            on_batch: Optional[Callable[[int], None]] = None) -> List[str]:
    """Rewrites every example's utterance (batched)."""
    out: List[str] = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start:start + batch_size]
        out.extend(r.text for r in rewriter.rewrite_batch([e.turns for e in chunk]))
        if on_batch:
            on_batch(len(chunk))
    return out
