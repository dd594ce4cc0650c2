"""How late runner reminders go out (FR6: within 5 s of their due time), measured against
the real gunicorn + worker process + Postgres with the fake Slack on the other side.

    .venv/bin/python -m bench.reminder_lateness [--reminders 100] [--spread 20]

Starts one run per channel, orders and closes each through the HTTP endpoints, then moves
every run's reminder (its job and runs.reminder_at) to a moment spread over the next
`--spread` seconds and waits until all are sent. Lateness is reminder_sent_at −
reminder_at as the worker recorded it. Prints p50/p95/max. The machine is shared and
noisy: compare figures from one run, not across runs.
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg

from bench.setup import bench_service
from coffeebuddy.slack import run_blocks
from coffeebuddy.store.queue import RUNNER_REMINDER
from testkit.fakes.slack_api import FakeSlack
from testkit.polling import eventually
from testkit.processes import HttpClient
from testkit.slack_payloads import block_action_body, command_body, view_submission_body

LEAD_SECONDS = 2.0  # the first reminder is due this long after they are moved


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reminders", type=int, default=100, help="runs (channels) to remind")
    parser.add_argument("--spread", type=float, default=20.0, help="seconds the due times span")
    parser.add_argument("--clients", type=int, default=4, help="concurrent HTTP clients")
    args = parser.parse_args()

    with bench_service("C0REM", args.reminders) as bench:
        run(bench.client, bench.slack, bench.url, bench.channels, bench.users, args)


def run(
    client: HttpClient,
    slack: FakeSlack,
    url: str,
    channels: list[str],
    users: list[str],
    args: argparse.Namespace,
) -> None:
    def post(path: str, body: bytes) -> None:
        status = client.post(path, body).status_code
        if status != 200:
            raise SystemExit(f"unexpected HTTP {status} from {path}")

    def start(i: int) -> None:
        post(
            "/slack/commands",
            command_body(
                user_id=users[i % len(users)],
                channel_id=channels[i],
                text="in 30m Lobby",
                response_url=slack.response_url(f"c{i}"),
            ),
        )

    with ThreadPoolExecutor(args.clients) as pool:
        list(pool.map(start, range(len(channels))))

    with psycopg.connect(url, autocommit=True) as conn:
        run_ids = {
            str(channel): str(run_id)
            for channel, run_id in conn.execute(
                "SELECT c.slack_channel_id, r.id FROM runs r JOIN channels c ON c.id = r.channel_id"
            ).fetchall()
        }

    def order_and_close(i: int) -> None:
        run_id = run_ids[channels[i]]
        for k in (1, 2):
            who = users[(i + k) % len(users)]
            post(
                "/slack/interactions",
                view_submission_body(user_id=who, run_id=run_id, order_text="flat white"),
            )
        post(
            "/slack/interactions",
            block_action_body(
                user_id=users[i % len(users)],
                channel_id=channels[i],
                action_id=run_blocks.ACTION_CLOSE_RUN,
                value=run_id,
                response_url=slack.response_url(f"x{i}"),
            ),
        )

    with ThreadPoolExecutor(args.clients) as pool:
        list(pool.map(order_and_close, range(len(channels))))

    with psycopg.connect(url, autocommit=True) as conn:

        def settled() -> bool:
            row = conn.execute(
                "SELECT count(*) FILTER (WHERE status = 'closed' AND runner_dm_ts IS NOT NULL"
                "                          AND summary_ts IS NOT NULL),"
                "       count(*) FROM runs"
            ).fetchone()
            busy = conn.execute(
                "SELECT count(*) FROM jobs WHERE status IN ('queued', 'running')"
                " AND run_at <= now() AND kind <> %s",
                (RUNNER_REMINDER,),
            ).fetchone()
            return row is not None and busy is not None and row[0] == row[1] and busy[0] == 0

        eventually(settled, timeout=120, what="every run closed, summarised and its runner told")
        n = len(channels)
        step = args.spread / max(1, n - 1)
        with conn.transaction():
            # What scheduling does in production: move the job and the run's reminder_at
            # together, and wake the worker (schedule_job_at sends the same NOTIFY).
            moved = conn.execute(
                "WITH r AS (SELECT id, now() + make_interval(secs => %s"
                "             + (row_number() OVER (ORDER BY random()) - 1) * %s) AS due"
                "             FROM runs WHERE status = 'closed'),"
                " j AS (UPDATE jobs SET run_at = r.due FROM r"
                "        WHERE jobs.run_id = r.id AND jobs.kind = %s AND jobs.status = 'queued'"
                "        RETURNING jobs.run_id)"
                " UPDATE runs SET reminder_at = r.due FROM r"
                "  WHERE runs.id = r.id AND r.id IN (SELECT run_id FROM j)",
                (LEAD_SECONDS, step, RUNNER_REMINDER),
            ).rowcount
            conn.execute("SELECT pg_notify('coffeebuddy_jobs', %s)", (RUNNER_REMINDER,))
        if moved != n:
            raise SystemExit(f"moved {moved} reminders, expected {n}")
        started = time.monotonic()

        def all_sent() -> bool:
            row = conn.execute(
                "SELECT count(*) FROM runs WHERE reminder_sent_at IS NOT NULL"
            ).fetchone()
            return row is not None and row[0] == n

        eventually(all_sent, timeout=LEAD_SECONDS + args.spread + 60, what="every reminder sent")
        elapsed = time.monotonic() - started
        time.sleep(1.0)  # let any duplicate arrive before counting
        lateness = [
            float(r[0])
            for r in conn.execute(
                "SELECT EXTRACT(EPOCH FROM reminder_sent_at - reminder_at) FROM runs"
            ).fetchall()
        ]
        events = conn.execute(
            "SELECT count(*) FROM events WHERE event_type = 'reminder_sent'"
        ).fetchone()

    sent = [
        c
        for c in slack.calls("chat.postMessage")
        # The reminder DM's text: "⏰ Pickup 10:30 …" or, with no pickup time, "⏰ Coffee run
        # reminder …" (the channel's last call starts "⏰ Last call").
        if c.ok and str(c.args.get("text", "")).startswith(("⏰ Pickup", "⏰ Coffee run reminder"))
    ]
    print(
        f"{n} reminders due over {args.spread:.0f} s, real worker process "
        f"(all sent {elapsed:.1f} s after scheduling)"
    )
    sent_events = events[0] if events else 0
    print(f"reminder DMs Slack accepted: {len(sent)}; reminder_sent events: {sent_events}")
    print(
        f"{'lateness':<10} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'min ms':>8} {'mean ms':>8}"
    )
    ms = [x * 1000 for x in lateness]
    print(
        f"{'':<10} {percentile(ms, 50):>8.1f} {percentile(ms, 95):>8.1f} {max(ms):>8.1f} "
        f"{min(ms):>8.1f} {statistics.fmean(ms):>8.1f}"
    )
    over = sum(1 for x in lateness if x >= 5.0)
    print(f"late by 5 s or more: {over}")


if __name__ == "__main__":
    main()
