"""`python -m coffeebuddy.local.reaper PID TMP_DIR [STATE_DIR]`: clean up after a dev runner that
died without doing it itself (SIGKILL, the OOM killer).

The runner's children die with it (PR_SET_PDEATHSIG), but the embedded Postgres is a daemon
started by pg_ctl and would keep running, holding its port and data directory. The reaper
waits, in its own session so that terminal signals pass it by, for the runner to exit; then
it stops the embedded Postgres under STATE_DIR, if the runner started one, and removes the
runner's temporary directory. After a clean stop the runner ends the reaper itself.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import sys

from coffeebuddy.local import embedded


def wait_for_exit(pid: int) -> None:
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        select.select([fd], [], [])  # a pidfd becomes readable when the process exits
    finally:
        os.close(fd)


def main(argv: list[str]) -> int:
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    pid, tmp = int(argv[0]), argv[1]
    wait_for_exit(pid)
    if len(argv) > 2:
        embedded.stop({"COFFEEBUDDY_STATE_DIR": argv[2]})
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
