"""Offline data for the evaluation tasks, and the seeded streams that fix data order.

Nothing here downloads anything:

- **digits**: `sklearn.datasets.load_digits` (the UCI optical handwritten digits, 8x8 images,
  1,797 samples, shipped inside scikit-learn), split once into train/validation by a fixed
  permutation that does not depend on the run seed, so every run validates on the same images.
  `perturb_digits` makes variants of them (random translations and pixel noise), for augmented
  training streams and for large fixed validation sets drawn from the held-out images.
- **stdlib corpus**: the Python standard library's own `.py` files, read from
  `sysconfig.get_paths()["stdlib"]` (site-packages excluded). Files are split into train and
  validation by a hash of their relative path, so the split is deterministic and a file never
  straddles it; files are then read in hash order until a character cap is reached. Characters
  are mapped to a fixed 98-symbol vocabulary (printable ASCII, tab, newline, one "other"), so the
  vocabulary does not depend on the corpus. The corpus depends on the interpreter's version:
  compare character-LM numbers only within one Python version (`Corpus.fingerprint` says which).

Randomness that decides data order, sampled labels or probe vectors comes from `generator(tag,
*parts)`: a fresh `torch.Generator` whose seed is a hash of the tag and the parts. A batch is
therefore a pure function of (seed, step), identical for every rule and for the sequential and
the batched (ensemble) trainer.
"""

from __future__ import annotations

import functools
import hashlib
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

VOCAB = [chr(c) for c in range(32, 127)] + ["\t", "\n"]  # index len(VOCAB) is "other"
VOCAB_SIZE = len(VOCAB) + 1


def stream_seed(tag: str, *parts: int | str) -> int:
    """A 63-bit seed from a stream name and parts (seed, step, ...): no collisions in practice."""
    text = ":".join([tag, *map(str, parts)]).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") >> 1


def generator(tag: str, *parts: int | str) -> torch.Generator:
    """A CPU generator for one named stream; draw on CPU and move, so results do not depend on
    the device."""
    return torch.Generator().manual_seed(stream_seed(tag, *parts))


class EpochSampler:
    """Minibatch indices for step s: consecutive slices of per-epoch permutations of range(n).

    The permutation of epoch e is drawn from `generator("epoch", seed, e)`, so `indices(step)` is a
    pure function of (seed, step) and every sample is seen once per epoch.
    """

    def __init__(self, n: int, batch_size: int, seed: int):
        if batch_size > n:
            raise ValueError(f"batch_size {batch_size} exceeds the {n} samples")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self._perms: dict[int, torch.Tensor] = {}

    def _epoch(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            if len(self._perms) > 2:  # steps only move forward: keep the last few epochs
                del self._perms[min(self._perms)]
            self._perms[epoch] = torch.randperm(self.n, generator=generator("epoch", self.seed, epoch))
        return self._perms[epoch]

    def indices(self, step: int) -> torch.Tensor:
        start = step * self.batch_size
        parts, need = [], self.batch_size
        while need:
            epoch, offset = divmod(start, self.n)
            take = min(need, self.n - offset)
            parts.append(self._epoch(epoch)[offset : offset + take])
            start, need = start + take, need - take
        return parts[0] if len(parts) == 1 else torch.cat(parts)


@dataclass(frozen=True)
class Digits:
    """Digits images flattened to 64 features in [0, 1] (pixel / 16) and labels 0..9."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor


@functools.lru_cache(maxsize=1)
def digits(val_fraction: float = 0.2) -> Digits:
    """The digits data set, split by a fixed permutation (the same for every run seed)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.tensor(bunch.data, dtype=torch.float32) / 16.0
    y = torch.tensor(bunch.target, dtype=torch.int64)
    order = torch.randperm(len(y), generator=generator("digits-split"))
    n_val = int(round(val_fraction * len(y)))
    val, train = order[:n_val], order[n_val:]
    return Digits(x[train], y[train], x[val], y[val])


def perturb_digits(x: torch.Tensor, gen: torch.Generator, max_shift: int = 1,
                   noise: float = 0.0) -> torch.Tensor:
    """Random variants of 8x8 digit images [N, 64] in [0, 1]: each image is translated by an
    independent (dy, dx) in [-max_shift, max_shift]^2 (zero fill, as the scanner's border), then
    Gaussian pixel noise of std `noise` is added and the result clipped to [0, 1].

    Translation is the classic augmentation for handwritten digits (Simard, Steinkraus & Platt
    2003, "Best practices for convolutional neural networks applied to visual document
    analysis"); on 8x8 images one pixel is an eighth of the digit. Draws come from `gen` only.
    """
    n, m = x.shape[0], max_shift
    images = torch.nn.functional.pad(x.reshape(n, 8, 8), (m, m, m, m))
    dy, dx = torch.randint(0, 2 * m + 1, (2, n), generator=gen)
    rows = (dy[:, None] + torch.arange(8))[:, :, None]
    cols = (dx[:, None] + torch.arange(8))[:, None, :]
    out = images[torch.arange(n)[:, None, None], rows, cols].reshape(n, 64)
    if noise > 0:
        out = (out + noise * torch.randn(out.shape, generator=gen)).clamp(0.0, 1.0)
    return out


@dataclass(frozen=True)
class Corpus:
    """Encoded character streams (uint8 token ids) of the stdlib corpus."""

    train: torch.Tensor
    val: torch.Tensor
    train_files: tuple[str, ...]
    val_files: tuple[str, ...]
    fingerprint: str  # hash of the file names and the encoded text: same value, same corpus


def _lookup_table() -> np.ndarray:
    table = np.full(256, len(VOCAB), dtype=np.uint8)
    for i, ch in enumerate(VOCAB):
        table[ord(ch)] = i
    return table


def decode(ids: torch.Tensor) -> str:
    """Token ids back to text ("other" prints as U+FFFD)."""
    return "".join(VOCAB[i] if i < len(VOCAB) else "\ufffd" for i in ids.tolist())


def stdlib_files(root: Path | None = None) -> list[Path]:
    """The standard library's `.py` files (sorted, site-packages excluded)."""
    root = Path(sysconfig.get_paths()["stdlib"]) if root is None else root
    return sorted(p for p in root.rglob("*.py") if "site-packages" not in p.relative_to(root).parts)


@functools.lru_cache(maxsize=4)
def stdlib_corpus(max_chars: int = 2_000_000, val_every: int = 10) -> Corpus:
    """Build (once per process and cap) the character corpus from the stdlib's source files.

    A file goes to validation when the hash of its relative path is 0 mod `val_every`; files are
    read in hash order, train until `max_chars` and validation until `max_chars // val_every`.
    Bytes outside the vocabulary (non-ASCII) become the "other" token.
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    keyed = sorted((stream_seed("file", p.relative_to(root).as_posix()), p)
                   for p in stdlib_files(root))
    table = _lookup_table()
    caps = {"train": max_chars, "val": max_chars // val_every}
    chunks: dict[str, list[np.ndarray]] = {"train": [], "val": []}
    names: dict[str, list[str]] = {"train": [], "val": []}
    sizes = {"train": 0, "val": 0}
    for key, path in keyed:
        split = "val" if key % val_every == 0 else "train"
        if sizes[split] >= caps[split]:
            if all(sizes[s] >= caps[s] for s in caps):
                break
            continue
        data = np.frombuffer(path.read_bytes(), dtype=np.uint8)[: caps[split] - sizes[split]]
        chunks[split].append(table[data])
        names[split].append(path.relative_to(root).as_posix())
        sizes[split] += len(data)
    if not chunks["train"] or not chunks["val"]:
        raise RuntimeError(f"no Python sources found under {root}")
    encoded = {s: np.concatenate(c) for s, c in chunks.items()}
    digest = hashlib.blake2b(digest_size=8)
    for s in ("train", "val"):
        digest.update("\n".join(names[s]).encode())
        digest.update(encoded[s].tobytes())
    return Corpus(
        train=torch.from_numpy(encoded["train"]),
        val=torch.from_numpy(encoded["val"]),
        train_files=tuple(names["train"]),
        val_files=tuple(names["val"]),
        fingerprint=digest.hexdigest(),
    )
