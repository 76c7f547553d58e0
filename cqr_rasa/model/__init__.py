"""The network and its decoding; imports torch, never rasa."""
import contextlib
from typing import Iterator

import torch

from cqr_rasa.model.decoding import Hypothesis, beam_search, greedy
from cqr_rasa.model.inference import Engine
from cqr_rasa.model.network import Losses, NetworkConfig, PointerGenerator

__all__ = ["Engine", "Hypothesis", "Losses", "NetworkConfig", "PointerGenerator", "beam_search",
           "greedy", "torch_threads"]


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Runs the block with `threads` intra-op threads, then restores the previous setting.

    This network's operations are small: on a 2-core machine one thread trained 5x faster than
    two, which spin against each other and against any other busy process.
    """
    previous = torch.get_num_threads()
    if threads == previous:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
