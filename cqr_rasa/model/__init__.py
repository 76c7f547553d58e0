"""The network and its decoding; imports torch, never rasa."""
from cqr_rasa.model.decoding import Hypothesis, beam_search, greedy
from cqr_rasa.model.inference import Engine
from cqr_rasa.model.network import Losses, NetworkConfig, PointerGenerator, torch_threads

__all__ = ["Engine", "Hypothesis", "Losses", "NetworkConfig", "PointerGenerator", "beam_search",
           "greedy", "torch_threads"]
