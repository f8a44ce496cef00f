"""``bench/throughput.py`` books the drainer's boot as boot: it reads the drainer's "ready" log line.

The line is ``drain_process.READY_LOG``; if its wording changed and the bench's pattern no longer
matched, the boot would silently fall back into the per-message columns.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest
from runwatch.workers.drain_process import READY_LOG

from tests.support import bench_scripts


@pytest.fixture(scope="module")
def throughput() -> ModuleType:
    return bench_scripts.load("throughput")


def _log(tmp_path: Path, *cpu_seconds: float) -> Path:
    lines = [f"INFO runwatch.drainer: {READY_LOG % ('runwatch:events', 'redis', 50, s)}" for s in cpu_seconds]
    path = tmp_path / "worker.log"
    path.write_text("dramatiq: worker started\n" + "\n".join(lines) + "\n")
    return path


def test_the_boot_left_in_the_phase_moves_to_boot(throughput: ModuleType, tmp_path: Path) -> None:
    cpu = {"worker": 8.0, "drainer": 3.0}
    moved = throughput.drainer_boot_in_phase(_log(tmp_path, 1.25), {"drainer": 0.25}, cpu)
    assert moved == pytest.approx(1.0)  # 0.25 s of it was before the first ack, in the boot already
    assert cpu == {"worker": 8.0, "drainer": pytest.approx(2.0)}


def test_only_the_first_drainer_boot_is_boot(throughput: ModuleType, tmp_path: Path) -> None:
    cpu = {"drainer": 3.0}
    assert throughput.drainer_boot_in_phase(_log(tmp_path, 0.5, 0.75), {}, cpu) == pytest.approx(0.5)
    assert cpu["drainer"] == pytest.approx(2.5)


def test_never_more_than_the_phase_counted(throughput: ModuleType, tmp_path: Path) -> None:
    cpu = {"drainer": 0.25}
    assert throughput.drainer_boot_in_phase(_log(tmp_path, 2.0), {"drainer": 0.5}, cpu) == pytest.approx(0.25)
    assert cpu["drainer"] == 0.0


def test_no_ready_line_moves_nothing(throughput: ModuleType, tmp_path: Path) -> None:
    cpu = {"drainer": 3.0}
    assert throughput.drainer_boot_in_phase(_log(tmp_path), {}, cpu) == 0.0
    assert throughput.drainer_boot_in_phase(tmp_path / "absent.log", {}, cpu) == 0.0
    assert cpu == {"drainer": 3.0}
