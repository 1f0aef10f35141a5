"""Character-level transformer language model on the Python standard library's source code.

A GPT-style decoder (Radford et al. 2019; layout as in Karpathy's nanoGPT): token and learned
position embeddings, pre-LayerNorm blocks of causal multi-head self-attention and a 4x GELU MLP,
a final LayerNorm and an untied linear head. The corpus is `evaluators.data.stdlib_corpus`
(train/validation split by file). Sequences are windows of `context + 1` characters at offsets
drawn per step from `generator("charlm-batch", seed, step)`; validation uses `val_windows`
fixed windows spread evenly over the validation files (256 for the selection and held-out
models, 8,192 characters at context 32: tuned AdamW's seed std there is 0.5% and 1.0% of its
mean loss, measured with bench/heldout_noise.py at 3 and 5 seeds).

Routing follows Muon's guidance (Jordan et al. 2024): the attention and MLP weights are hidden
matrices (`matrix`); the embeddings, the head, LayerNorm gains and biases are `default`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from evaluators.data import VOCAB_SIZE, generator, stdlib_corpus
from evaluators.recipe import Recipe
from evaluators.tasks.base import Problem, Task, mean_cross_entropy
from evaluators.tasks.layers import Dense, Embedding, LayerNorm


@dataclass(frozen=True)
class CharLMConfig:
    width: int
    layers: int
    heads: int
    context: int
    batch_size: int
    recipe: Recipe
    target: float
    val_windows: int = 64
    corpus_chars: int = 1_000_000


class Block(nn.Module):
    """Pre-LN transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, width: int, heads: int, gen: torch.Generator):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = LayerNorm(width), LayerNorm(width)
        self.qkv = Dense(width, 3 * width, gen, bias=False)
        self.proj = Dense(width, width, gen, bias=False)
        self.up = Dense(width, 4 * width, gen, bias=False)
        self.down = Dense(4 * width, width, gen, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        *lead, t, width = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(width, dim=-1)
        q, k, v = (z.reshape(*lead, t, self.heads, -1).transpose(-2, -3) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(-2, -3).reshape(*lead, t, width))
        return x + self.down(F.gelu(self.up(self.ln2(x))))


class CharTransformer(nn.Module):
    """Decoder-only character model: ids [..., T] -> logits [..., T, vocab]."""

    def __init__(self, cfg: CharLMConfig, gen: torch.Generator):
        super().__init__()
        self.tokens = Embedding(VOCAB_SIZE, cfg.width, gen)
        self.positions = Embedding(cfg.context, cfg.width, gen)
        self.blocks = nn.ModuleList(Block(cfg.width, cfg.heads, gen) for _ in range(cfg.layers))
        self.ln = LayerNorm(cfg.width)
        self.head = Dense(cfg.width, VOCAB_SIZE, gen, bias=False, head=True)
        self.register_buffer("pos", torch.arange(cfg.context), persistent=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        pos = self.pos[: ids.shape[-1]]
        if self.positions.stacked():  # every member gets its own position table
            pos = pos.expand(ids.shape[0], -1)
        x = self.tokens(ids) + self.positions(pos).unsqueeze(-3)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln(x))


def windows(stream: torch.Tensor, offsets: torch.Tensor, length: int) -> torch.Tensor:
    """Rows stream[o : o + length] for each offset, as int64 ids."""
    return stream[offsets.unsqueeze(1) + torch.arange(length)].long()


class CharLM(Task):
    """Next-character prediction on stdlib Python source."""

    def __init__(self, name: str, presets: dict[str, CharLMConfig]):
        self.name, self.presets = name, presets
        self.description = "character transformer LM on Python stdlib source"

    def _build(self, cfg: CharLMConfig, seed, init, device) -> Problem:
        corpus = stdlib_corpus(cfg.corpus_chars)
        span = cfg.context + 1
        model = CharTransformer(cfg, init)
        train = corpus.train

        def batch(step: int):
            gen = generator("charlm-batch", seed, step)
            rows = windows(train, torch.randint(0, len(train) - span, (cfg.batch_size,),
                                                generator=gen), span).to(device)
            return rows[:, :-1], rows[:, 1:]

        starts = torch.linspace(0, len(corpus.val) - span - 1, cfg.val_windows).long()
        val_rows = windows(corpus.val, starts, span).to(device)
        chunk = max(1, min(cfg.val_windows, cfg.batch_size * 4))
        val = [(r[:, :-1], r[:, 1:]) for r in val_rows.split(chunk)]
        return Problem(model=model, train_batch=batch, val_batches=val, loss=mean_cross_entropy,
                       recipe=cfg.recipe, target_loss=cfg.target, kind="classification")
