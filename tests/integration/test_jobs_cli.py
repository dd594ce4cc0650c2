"""`python -m coffeebuddy jobs list|retry` against a real Postgres, run in-process through
`coffeebuddy.__main__.main` so that what operators type is what is tested."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from coffeebuddy.__main__ import main
from coffeebuddy.jobs.worker import CHANNEL as NOTIFY_CHANNEL
from coffeebuddy.slack import run_blocks
from coffeebuddy.store import queue
from testkit.fakes.slack_api import FakeSlack
from tests.driver import Channel, SqlFn, runner_of

SECRET_URL = "https://hooks.slack.com/actions/T0/123/secret-response-url"


@pytest.fixture(autouse=True)
def _database_env(monkeypatch: pytest.MonkeyPatch, database_url: str) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)


def _add(sql: SqlFn, kind: str, status: str, **columns: Any) -> int:
    values: dict[str, Any] = {
        "kind": kind,
        "status": status,
        "payload": json.dumps({"response_url": SECRET_URL, "run_id": "r"}),
        "attempts": 0,
        "max_attempts": 8,
        "last_error": None,
        "dedupe_key": None,
        "finished_at": None,
        "locked_by": None,
        **columns,
    }
    names = ", ".join(values)
    marks = ", ".join(["%s"] * len(values))
    rows = sql(f"INSERT INTO jobs ({names}) VALUES ({marks}) RETURNING id", *values.values())
    return int(rows[0][0])


def _dead(sql: SqlFn, kind: str = queue.POST_SUMMARY, **columns: Any) -> int:
    defaults: dict[str, Any] = {
        "attempts": 8,
        "last_error": "http_503",
        "locked_by": "host:1:abc",
        **columns,
    }
    job_id = _add(sql, kind, "dead", **defaults)
    sql("UPDATE jobs SET finished_at = now(), run_at = now() - interval '1 hour' WHERE id = %s",
        job_id)  # fmt: skip
    return job_id


def _row(sql: SqlFn, job_id: int) -> dict[str, Any]:
    rows = sql(
        "SELECT status, attempts, locked_by, finished_at, last_error,"
        " EXTRACT(EPOCH FROM now() - run_at)::float8 FROM jobs WHERE id = %s",
        job_id,
    )
    keys = ("status", "attempts", "locked_by", "finished_at", "last_error", "due_since")
    return dict(zip(keys, rows[0], strict=True))


# ---- list -------------------------------------------------------------------------------


def test_list_shows_jobs_newest_first_without_payloads(
    sql: SqlFn, capsys: pytest.CaptureFixture[str]
) -> None:
    done = _add(sql, queue.POST_RUN_MESSAGE, "done", attempts=1, max_attempts=8)
    dead = _dead(sql, queue.DM_RUNNER, last_error="missing_scope", attempts=1)
    queued = _add(sql, queue.REFRESH_RUN_MESSAGE, "queued", last_error="ratelimited")

    assert main(["jobs", "list"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "KIND", "STATUS", "ATTEMPTS", "RUN_AT", "(UTC)", "LAST_ERROR"]
    assert [line.split()[0] for line in lines[1:]] == [str(queued), str(dead), str(done)]
    cells = {int(line.split()[0]): line.split() for line in lines[1:]}
    assert cells[dead][1:4] == [queue.DM_RUNNER, "dead", "1/8"]
    assert cells[dead][-1] == "missing_scope"
    assert cells[done][-1] == "-"
    assert cells[queued][-1] == "ratelimited"
    # Columns line up: every row starts its KIND at the same place.
    assert len({line.index(line.split()[1]) for line in lines[1:]}) == 1
    assert "secret-response-url" not in out
    assert "hooks.slack.com" not in out


def test_list_shows_the_attempts_a_job_really_gets(
    sql: SqlFn, capsys: pytest.CaptureFixture[str]
) -> None:
    # The row allows 8; its kind (jobs/kinds.py) allows an answer 4, and the worker stops there.
    notify = _add(sql, queue.NOTIFY_USER, "queued", attempts=2, max_attempts=8)
    fewer = _add(sql, queue.NOTIFY_USER, "queued", attempts=1, max_attempts=2)
    assert main(["jobs", "list"]) == 0
    cells = {
        int(line.split()[0]): line.split() for line in capsys.readouterr().out.splitlines()[1:]
    }
    assert cells[notify][3] == "2/4"
    assert cells[fewer][3] == "1/2"


def test_list_filters_by_status_and_limits(sql: SqlFn, capsys: pytest.CaptureFixture[str]) -> None:
    dead = [_dead(sql) for _ in range(3)]
    _add(sql, queue.NOTIFY_USER, "queued")
    _add(sql, queue.NOTIFY_USER, "running", locked_by="w1")

    assert main(["jobs", "list", "--status", "dead", "--limit", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [int(line.split()[0]) for line in lines[1:]] == [dead[2], dead[1]]
    assert all(line.split()[2] == "dead" for line in lines[1:])

    assert main(["jobs", "list", "--status", "running"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[2] for line in lines[1:]] == ["running"]


def test_list_says_when_there_is_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["jobs", "list", "--status", "dead"]) == 0
    assert capsys.readouterr().out.strip() == "no dead jobs"
    assert main(["jobs", "list"]) == 0
    assert capsys.readouterr().out.strip() == "no jobs"


def test_list_rejects_a_bad_status_or_limit(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["jobs", "list", "--status", "sleeping"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["jobs", "list", "--limit", "0"])
    assert "between 1 and 10000" in capsys.readouterr().err


# ---- retry ------------------------------------------------------------------------------


def test_retry_puts_a_dead_job_back_and_wakes_the_workers(
    database_url: str, sql: SqlFn, capsys: pytest.CaptureFixture[str]
) -> None:
    job_id = _dead(sql, queue.POST_SUMMARY)
    other = _dead(sql, queue.POST_SUMMARY)
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute(f"LISTEN {NOTIFY_CHANNEL}")

        assert main(["jobs", "retry", str(job_id)]) == 0

        woken = [n.payload for n in listener.notifies(timeout=5, stop_after=1)]
    assert woken == [queue.POST_SUMMARY]
    assert capsys.readouterr().out.strip() == f"job {job_id} ({queue.POST_SUMMARY}) queued again"
    row = _row(sql, job_id)
    assert row["status"] == "queued"
    assert row["attempts"] == 0
    assert row["locked_by"] is None
    assert row["finished_at"] is None
    assert row["last_error"] == "http_503", "why it died stays visible until it succeeds"
    assert -1 < row["due_since"] < 5, "due now, by the database clock"
    assert _row(sql, other)["status"] == "dead", "only the job asked for"


def test_retry_of_a_job_that_is_not_dead_fails_clearly(
    sql: SqlFn, capsys: pytest.CaptureFixture[str]
) -> None:
    done = _add(sql, queue.POST_RUN_MESSAGE, "done", attempts=1)
    queued = _add(sql, queue.NOTIFY_USER, "queued")

    assert main(["jobs", "retry", str(done)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"job {done} is done, not dead: only dead jobs can be retried" in captured.err

    assert main(["jobs", "retry", str(queued), "999999"]) == 1
    err = capsys.readouterr().err
    assert f"job {queued} is queued, not dead" in err
    assert "job 999999: no such job" in err
    assert _row(sql, done)["status"] == "done"
    assert _row(sql, done)["attempts"] == 1


def test_retry_of_several_ids_revives_the_dead_ones_and_reports_the_rest(
    sql: SqlFn, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = _dead(sql)
    running = _add(sql, queue.NOTIFY_USER, "running", locked_by="w1")

    assert main(["jobs", "retry", str(dead), str(running), str(dead)]) == 1
    captured = capsys.readouterr()
    assert captured.out.strip() == f"job {dead} ({queue.POST_SUMMARY}) queued again"
    assert f"job {running} is running, not dead" in captured.err
    assert _row(sql, dead)["status"] == "queued"
    assert _row(sql, running)["status"] == "running"


def test_retry_all_dead_respects_coalescing_keys(
    sql: SqlFn, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = [_dead(sql), _dead(sql, queue.DM_RUNNER)]
    # Two dead refreshes of one message: one going back does the work of both.
    older = _dead(sql, queue.REFRESH_RUN_MESSAGE, dedupe_key="refresh:r1")
    newer = _dead(sql, queue.REFRESH_RUN_MESSAGE, dedupe_key="refresh:r1")
    # A refresh already queued for r2 will do what the dead one would.
    covered = _dead(sql, queue.REFRESH_RUN_MESSAGE, dedupe_key="refresh:r2")
    _add(sql, queue.REFRESH_RUN_MESSAGE, "queued", dedupe_key="refresh:r2")
    done = _add(sql, queue.POST_RUN_MESSAGE, "done")

    assert main(["jobs", "retry", "--all-dead"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert sorted(int(line.split()[1]) for line in out) == sorted([*plain, newer])
    assert [_row(sql, i)["status"] for i in plain] == ["queued", "queued"]
    assert _row(sql, newer)["status"] == "queued"
    assert _row(sql, older)["status"] == "dead"
    assert _row(sql, covered)["status"] == "dead"
    assert _row(sql, done)["status"] == "done"

    # The one left because of its key is explained when asked for by id.
    assert main(["jobs", "retry", str(covered)]) == 1
    assert "same key will do its work" in capsys.readouterr().err

    assert main(["jobs", "retry", "--all-dead"]) == 0
    assert capsys.readouterr().out.strip() == "no dead jobs"


def test_retry_needs_ids_or_all_dead(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["jobs", "retry"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        main(["jobs", "retry", "1", "--all-dead"])
    assert "not allowed with" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["jobs", "retry", "abc"])
    assert "not a job id: 'abc'" in capsys.readouterr().err


def test_database_url_is_required(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DATABASE_URL")
    assert main(["jobs", "list"]) == 2
    assert "DATABASE_URL is required" in capsys.readouterr().err


def test_an_unreachable_database_is_reported(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/nowhere")
    assert main(["jobs", "retry", "--all-dead"]) == 3
    assert "cannot reach the database" in capsys.readouterr().err


# ---- the whole story: a job dies, is fixed, retried, and runs once -----------------------


def test_a_dead_dm_is_sent_once_after_retry(
    chan: Channel, sql: SqlFn, slack: FakeSlack, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = chan.open_run("U0ANA")
    chan.submit("U0BEN", "tea")
    # The app lost a scope: opening the runner's DM fails, which no retry can fix.
    slack.fail_next("conversations.open", error="missing_scope")
    chan.click_and_work("U0ANA", run_blocks.ACTION_CLOSE_RUN, run_id)
    dm_job = sql("SELECT id, status, last_error FROM jobs WHERE kind = %s", queue.DM_RUNNER)
    assert [(s, e) for _, s, e in dm_job] == [("dead", "missing_scope")]
    job_id = int(dm_job[0][0])
    runner = runner_of(sql, run_id)
    assert slack.dms(runner) == []

    assert main(["jobs", "list", "--status", "dead"]) == 0
    assert str(job_id) in capsys.readouterr().out
    # Scope granted again; the operator re-runs the job.
    assert main(["jobs", "retry", str(job_id)]) == 0
    assert chan.work() == 1
    assert len(slack.dms(runner)) == 1
    assert _row(sql, job_id)["status"] == "done"
    assert _row(sql, job_id)["last_error"] is None
    # Retrying again is refused, and running everything again sends nothing new.
    assert main(["jobs", "retry", str(job_id)]) == 1
    sql("UPDATE jobs SET status = 'queued', run_at = now() WHERE id = %s", job_id)
    chan.work()
    assert len(slack.dms(runner)) == 1
