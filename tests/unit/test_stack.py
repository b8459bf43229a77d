"""The local stack's process handling: ports nobody else takes, and start-up failures that say
why."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from phasegate.demo import stack as stack_module
from phasegate.demo.stack import EPHEMERAL_PORTS, bindable, free_ports, listening_ports, stack


def test_free_ports_are_distinct_bindable_and_below_the_ephemeral_range() -> None:
    ports = free_ports(5)
    assert len(set(ports)) == 5
    assert all(port in listening_ports() and bindable(port) for port in ports)
    if EPHEMERAL_PORTS.exists():
        low, high = (int(p) for p in EPHEMERAL_PORTS.read_text().split())
        assert not any(low <= p <= high for p in ports), "connect() never hands these out"


def test_with_no_room_outside_the_ephemeral_range_the_kernel_chooses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    everything = tmp_path / "ip_local_port_range"
    everything.write_text("1024\t65535\n")
    monkeypatch.setattr(stack_module, "EPHEMERAL_PORTS", everything)
    assert listening_ports() == []
    ports = free_ports(3)
    assert len(set(ports)) == 3 and all(bindable(port) for port in ports)


def test_a_process_that_exits_before_serving_fails_at_once_with_its_log(tmp_path: Path) -> None:
    with stack(tmp_path) as running:
        process = running.start(
            "broken", [sys.executable, "-c", "print('address already in use'); raise SystemExit(3)"]
        )
        started = time.monotonic()
        with pytest.raises(RuntimeError) as failure:
            process.wait_serving(f"http://127.0.0.1:{free_ports(1)[0]}/healthz", timeout=30)
        assert time.monotonic() - started < 10, "no waiting out the timeout for a dead process"
    assert "broken exited with code 3" in str(failure.value)
    assert "address already in use" in str(failure.value)


def test_a_process_that_never_serves_times_out_with_its_log(tmp_path: Path) -> None:
    script = "print('stuck in start-up', flush=True); import time; time.sleep(60)"
    with stack(tmp_path) as running:
        process = running.start("stuck", [sys.executable, "-c", script])
        with pytest.raises(TimeoutError) as failure:
            process.wait_serving(f"http://127.0.0.1:{free_ports(1)[0]}/healthz", timeout=2)
        assert process.alive()
    assert not process.alive(), "the stack stops what it started"
    assert "stuck not ready after 2s" in str(failure.value)
    assert "stuck in start-up" in str(failure.value)
