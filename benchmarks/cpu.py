"""Who used the CPUs during a workload: the server, PostgreSQL, the load generator, or something
else on the machine (which makes the numbers less trustworthy). Read from /proc."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

_TICK = os.sysconf("SC_CLK_TCK")


def process_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` (all its threads), 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / _TICK


def machine_busy_seconds() -> float:
    """CPU seconds spent not idle, summed over all CPUs, since boot."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            values = [int(v) for v in stat.readline().split()[1:]]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (values + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / _TICK


@dataclass(frozen=True, slots=True)
class Sample:
    wall: float
    machine: float
    server: float
    postgres: float
    client: float


def sample(server_pid: int, postgres_pids: list[int]) -> Sample:
    times = os.times()
    return Sample(
        wall=time.perf_counter(),
        machine=machine_busy_seconds(),
        server=process_seconds(server_pid),
        postgres=sum(process_seconds(pid) for pid in postgres_pids),
        client=times.user + times.system,
    )


@dataclass(frozen=True, slots=True)
class Usage:
    """Average CPU use between two samples, in cores (1.0 = one core busy all the time)."""

    server: float
    postgres: float
    client: float
    other: float


def usage(before: Sample, after: Sample) -> Usage:
    wall = max(after.wall - before.wall, 1e-9)
    server = (after.server - before.server) / wall
    postgres = max(after.postgres - before.postgres, 0.0) / wall
    client = (after.client - before.client) / wall
    machine = (after.machine - before.machine) / wall
    return Usage(server, postgres, client, max(machine - server - postgres - client, 0.0))
