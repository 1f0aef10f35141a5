"""What a piece of evaluation cost: wall time and peak memory on the device it ran on.

On CUDA the peak is ``torch.cuda.max_memory_allocated`` after resetting the peak counter at the
start (memory held by tensors, not the caching allocator's reserve; both are recorded), and the
clock is read after ``torch.cuda.synchronize`` so queued kernels count. On a CPU the figure is the
process's resident-set high-water mark (``getrusage``): it never goes down, so it is the peak of
the whole process up to that point, not of the measured block alone.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass


@dataclass
class Usage:
    """Wall seconds and peak bytes of one measured block, and what the bytes mean."""

    wall_time_s: float = 0.0
    peak_memory_bytes: int = 0
    reserved_memory_bytes: int = 0  # CUDA only: what the caching allocator held at most
    memory_kind: str = ""  # "cuda allocated" | "process peak RSS"
    device_name: str = ""

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _peak_rss_bytes() -> int:
    try:
        import resource
    except ImportError:  # not on Windows
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # macOS bytes, Linux KiB


class measure:
    """``with measure(device) as usage:`` fills ``usage`` (a `Usage`) when the block ends."""

    def __init__(self, device: str = "cpu"):
        self.cuda = str(device).startswith("cuda")
        self.device = device
        self.usage = Usage()

    def __enter__(self) -> Usage:
        if self.cuda:
            import torch

            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.usage.device_name = torch.cuda.get_device_name(self.device)
        else:
            import platform

            self.usage.device_name = platform.processor() or platform.machine()
        self._start = time.perf_counter()
        return self.usage

    def __exit__(self, *exc) -> None:
        u = self.usage
        if self.cuda:
            import torch

            torch.cuda.synchronize(self.device)
            u.peak_memory_bytes = int(torch.cuda.max_memory_allocated(self.device))
            u.reserved_memory_bytes = int(torch.cuda.max_memory_reserved(self.device))
            u.memory_kind = "cuda allocated"
        else:
            u.peak_memory_bytes = _peak_rss_bytes()
            u.memory_kind = "process peak RSS"
        u.wall_time_s = time.perf_counter() - self._start


def format_bytes(n: int) -> str:
    """``1536 -> '1.5 KiB'``: binary units, three significant figures."""
    value, unit = float(n), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            break
        value /= 1024
    return f"{int(value)} B" if unit == "B" else f"{value:.3g} {unit}"
