"""The benchmark starts each phase on a quiet machine: busy CPU time read from /proc/stat."""

from __future__ import annotations

from tests.support import bench_scripts

common = bench_scripts.load("common")


def test_idle_and_iowait_are_not_busy_and_guest_time_is_not_counted_twice():
    # user nice system idle iowait irq softirq steal guest guest_nice
    line = "cpu  100 5 50 800 30 2 3 10 40 0\n"
    assert common.parse_cpu_line(line) == (100 + 5 + 50 + 2 + 3 + 10, 1000)


def test_this_machine_reports_busy_ticks_below_its_total():
    busy, total = common.cpu_times()
    assert 0 <= busy < total
