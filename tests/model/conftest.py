"""Small synthetic sources, batches and networks for the network contract tests."""
import random
from typing import List, Sequence

import pytest
import torch

from cqr_rasa.features import (
    BIO_IDS,
    EOS_ID,
    MAX_DISTANCE,
    ROLE_NAMES,
    SPEAKER_IDS,
    Source,
    make_batch,
)
from cqr_rasa.model import NetworkConfig, PointerGenerator, torch_threads

WORD_VOCAB, GEN_VOCAB, INTENT_VOCAB, TYPE_VOCAB = 30, 12, 5, 6
FIRST_WORD = 4  # generation ids below this are the specials


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny tensors: one thread is faster, and far faster when another job holds the CPU."""
    with torch_threads(1):
        yield


def make_source(rng: random.Random, length: int, n_oov: int, utterance_len: int) -> Source:
    """A source whose first `n_oov` positions hold its OOV words (ext ids GEN_VOCAB + k)."""
    assert n_oov <= length and utterance_len <= length
    ext = [GEN_VOCAB + k for k in range(n_oov)]
    ext += [rng.randrange(FIRST_WORD, GEN_VOCAB) for _ in range(length - n_oov)]
    rng.shuffle(ext)
    start = length - utterance_len
    turn_index = [0 if i < start else 1 for i in range(length)]
    return Source(
        words=[f"w{e}" for e in ext],
        turn_index=turn_index,
        word_ids=[rng.randrange(1, WORD_VOCAB) for _ in range(length)],
        speaker_ids=[rng.randrange(1, len(SPEAKER_IDS) + 1) for _ in range(length)],
        intent_ids=[rng.randrange(1, INTENT_VOCAB) for _ in range(length)],
        bio_ids=[rng.randrange(1, len(BIO_IDS) + 1) for _ in range(length)],
        type_ids=[rng.randrange(1, TYPE_VOCAB) for _ in range(length)],
        role_ids=[rng.randrange(1, len(ROLE_NAMES)) for _ in range(length)],
        distance_ids=[rng.randrange(1, MAX_DISTANCE + 2) for _ in range(length)],
        ext_ids=ext,
        oov=[f"w{GEN_VOCAB + k}" for k in range(n_oov)],
        utterance_start=start,
        glued=[False] * length,
    )


def make_target(rng: random.Random, source: Source, length: int) -> List[int]:
    """`length` ids alternating between a generated word and a copied OOV word, then EOS."""
    oov_ids = sorted(set(e for e in source.ext_ids if e >= GEN_VOCAB))
    out = []
    for t in range(length):
        if t % 2 == 1 and oov_ids:
            out.append(rng.choice(oov_ids))
        else:
            out.append(rng.randrange(FIRST_WORD, GEN_VOCAB))
    return out + [EOS_ID]


def make_network(hidden: int, seed: int = 0, dropout: float = 0.0) -> PointerGenerator:
    torch.manual_seed(seed)
    config = NetworkConfig(WORD_VOCAB, GEN_VOCAB, INTENT_VOCAB, TYPE_VOCAB, word_dim=8,
                           feature_dim=4, hidden=hidden, attention=hidden, dropout=dropout)
    return PointerGenerator(config)


def make_case(lengths: Sequence[int], seed: int = 0, target_lengths: Sequence[int] = ()):
    """A batch with one source per length (OOV counts differ, so padding OOV slots exist)."""
    rng = random.Random(seed)
    sources = [make_source(rng, n, n_oov=min(n, 1 + i), utterance_len=min(n, 3))
               for i, n in enumerate(lengths)]
    target_lengths = list(target_lengths) or [3 + (i % 2) for i in range(len(lengths))]
    targets = [make_target(rng, s, k) for s, k in zip(sources, target_lengths)]
    flags = [i % 2 == 0 for i in range(len(lengths))]
    return sources, make_batch(sources, targets, flags)


@pytest.fixture
def case():
    return make_case


@pytest.fixture
def network():
    return make_network
