"""How fast this machine runs Python right now, to read the other figures against: the
machine may be shared, and a benchmark's figures scale with what it is left."""

from __future__ import annotations

import os
import time


def calibration() -> tuple[float, float]:
    """CPU and wall seconds of a fixed pure-Python loop (3,000,000 additions)."""
    cpu, wall = time.thread_time(), time.perf_counter()
    total = 0
    for i in range(3_000_000):
        total += i
    return time.thread_time() - cpu, time.perf_counter() - wall


def describe() -> str:
    cpu, wall = calibration()
    return (
        f"this machine now: a 3M-addition Python loop in {cpu:.2f} s CPU, {wall:.2f} s wall; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
