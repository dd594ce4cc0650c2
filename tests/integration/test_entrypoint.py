"""docker-entrypoint.sh run as the image runs it: it prepares the Prometheus multiprocess
directory and then becomes the command (exec), so signals reach gunicorn and the worker."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.unit.test_packaging import ENTRYPOINT


def test_entrypoint_execs_the_command(tmp_path: Path) -> None:
    # Without `exec` the shell stays PID 1, SIGTERM never reaches gunicorn or the worker and
    # the kubelet kills them after the grace period. The command must be the same process.
    proc = subprocess.Popen(
        ["sh", str(ENTRYPOINT), "sh", "-c", "echo $$"],
        env={"PATH": "/usr/bin:/bin", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "m")},
        stdout=subprocess.PIPE,
        text=True,
    )
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert int(out) == proc.pid


def test_entrypoint_empties_the_metrics_dir_then_execs(tmp_path: Path) -> None:
    assert os.access(ENTRYPOINT, os.X_OK), "docker-entrypoint.sh must be executable"
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    (metrics / "counter_1234.db").write_bytes(b"stale")
    (metrics / ".hidden").write_bytes(b"stale")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics),
    }
    done = subprocess.run(
        [
            "sh",
            str(ENTRYPOINT),
            "sh",
            "-c",
            'ls -A "$PROMETHEUS_MULTIPROC_DIR"; echo "exec:$0"',
            "x",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    assert done.stdout == "exec:x\n"
    assert metrics.is_dir()
    # A directory that does not exist yet is created.
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "new" / "metrics")
    subprocess.run(["sh", str(ENTRYPOINT), "true"], env=env, timeout=10, check=True)
    assert (tmp_path / "new" / "metrics").is_dir()


def test_entrypoint_refuses_a_relative_metrics_dir(tmp_path: Path) -> None:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PROMETHEUS_MULTIPROC_DIR": "metrics"}
    done = subprocess.run(
        ["sh", str(ENTRYPOINT), "true"], env=env, cwd=tmp_path, capture_output=True, timeout=10
    )
    assert done.returncode != 0
    assert not (tmp_path / "metrics").exists()
