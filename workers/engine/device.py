"""Pick the device and dtype once, so CPU (tests, embedded demo) and CUDA runs share every line."""

from __future__ import annotations

import torch

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(device: str = "auto") -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' was requested but CUDA is not available on this machine")
    return device


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    # bf16 on CPU is slow and numerically poor for small-batch training; CUDA gets bf16 like the paper.
    if dtype == "auto":
        return torch.bfloat16 if device == "cuda" else torch.float32
    if dtype not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; valid: auto, {', '.join(_DTYPES)}")
    return _DTYPES[dtype]


class PeakMemoryMeter:
    """Peak memory of one training run: CUDA max-allocated, else the process's peak resident set.

    On CPU, ``ru_maxrss`` is a high-water mark for the whole process life, so a second run in the same
    process would inherit the first one's peak. A sampling thread records the RSS maximum seen
    while this meter is running instead (sampled every 50 ms: short spikes can be missed).
    """

    def __init__(self, device: str):
        self.device = device
        self._peak = 0
        self._stop = None
        self._thread = None

    def start(self) -> None:
        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
            return
        import threading

        import psutil

        process = psutil.Process()
        self._peak = process.memory_info().rss
        self._stop = threading.Event()

        def sample() -> None:
            while not self._stop.wait(0.05):
                self._peak = max(self._peak, process.memory_info().rss)

        self._thread = threading.Thread(target=sample, name="peak-memory", daemon=True)
        self._thread.start()

    def peak_bytes(self) -> int:
        if self.device == "cuda":
            return int(torch.cuda.max_memory_allocated())
        import psutil

        self._peak = max(self._peak, psutil.Process().memory_info().rss)
        return int(self._peak)

    def stop(self) -> int:
        peak = self.peak_bytes()
        if self._stop is not None:
            self._stop.set()
            self._thread.join(timeout=1)
        return peak
