"""CPU time used by the processes a benchmark compares, read from /proc (Linux only).

The web's gunicorn workers, the job worker(s), the floor's gunicorn workers, and the
Postgres backends serving each of them (told apart by `application_name`): each phase of
`bench.burst` reads them before and after, and prints CPU milliseconds per request."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import psycopg

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU of the processes (their threads included); 0 for one gone."""
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _TICK


def children(pid: int, needle: str = "") -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[1]) == pid and needle in cmdline:
            found.append(int(entry.name))
    return sorted(found)


class CpuMeter:
    """Named groups of processes; `read()` is their CPU seconds now. The groups of
    Postgres backends are looked up afresh at each read (pools open and close them)."""

    def __init__(self, url: str, groups: Mapping[str, list[int]], backends: Mapping[str, str]):
        self._url = url
        self._groups = dict(groups)
        self._backends = dict(backends)  # group name -> application_name

    def read(self) -> dict[str, float]:
        out = {name: cpu_seconds(pids) for name, pids in self._groups.items()}
        with psycopg.connect(self._url, autocommit=True) as conn:
            for name, app in self._backends.items():
                rows = conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (app,)
                ).fetchall()
                out[name] = cpu_seconds(r[0] for r in rows)
        return out

    @staticmethod
    def used(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
        return {k: max(0.0, after[k] - before.get(k, 0.0)) for k in after}
