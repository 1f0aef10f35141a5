"""Wall time and peak memory of an evaluation block (evaluators.resources)."""

import time

import pytest
import torch

from evaluators.resources import Usage, format_bytes, measure


def test_measure_on_cpu_times_the_block_and_reads_peak_rss():
    with measure("cpu") as usage:
        block = torch.ones(4 * 2**20)  # 16 MiB, so the process peak is at least that
        time.sleep(0.05)
    assert usage.wall_time_s >= 0.05
    assert usage.peak_memory_bytes >= block.numel() * 4
    assert usage.memory_kind == "process peak RSS" and usage.reserved_memory_bytes == 0
    assert set(usage.to_dict()) == set(Usage().__dict__)


@pytest.mark.parametrize("n, text", [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"),
                                     (5 * 2**20, "5 MiB"), (3 * 2**40, "3 TiB"),
                                     (2**50, "1.02e+03 TiB")])
def test_format_bytes_binary_units(n, text):
    assert format_bytes(n) == text


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_measure_on_cuda_reports_allocated_peak():
    with measure("cuda") as usage:
        x = torch.empty(8 * 2**20, device="cuda")  # 32 MiB
        del x
    assert usage.peak_memory_bytes >= 32 * 2**20
    assert usage.memory_kind == "cuda allocated" and usage.device_name
