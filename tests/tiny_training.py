"""A tiny learnable corpus and model/train configs shared by the trainer's tests (test_train, test_faults)."""

import torch

from curse_of_depth.data import CharTokenizer, Corpus
from curse_of_depth.model import ModelConfig
from curse_of_depth.train import TrainConfig

VOCAB = "abcdefghijklmnop"
MC = ModelConfig(vocab_size=len(VOCAB), d_model=32, n_layers=2, n_heads=4, seq_len=32)


def learnable_corpus() -> Corpus:
    """A noisy repeating pattern, so the loss falls within a few steps."""
    g = torch.Generator().manual_seed(0)
    base = torch.arange(len(VOCAB)).repeat(400)
    noise = torch.randint(0, len(VOCAB), base.shape, generator=g)
    data = torch.where(torch.rand(base.shape, generator=g) < 0.1, noise, base)
    return Corpus("synthetic", data[:5600].clone(), data[5600:].clone(), CharTokenizer(VOCAB))


def tc(**kw) -> TrainConfig:
    base = dict(max_steps=20, batch_size=4, seq_len=32, eval_every=10, eval_batches=2, eval_batch_size=4, device="cpu")
    return TrainConfig(**{**base, **kw})
