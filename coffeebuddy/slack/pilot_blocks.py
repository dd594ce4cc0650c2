"""Block Kit for the pilot's figures in `/coffee stats`: the channel's fairness share (for
everyone) and the pilot report (for admins). Pure functions of the figures."""

from __future__ import annotations

from collections.abc import Sequence

from coffeebuddy.domain.pilot import (
    CSAT_TARGET,
    FAILED_TARGET_RATIO,
    FAIRNESS_DAYS,
    FAIRNESS_TARGET_SHARE,
    OUTCOME_TARGET_SECONDS,
    OUTCOME_TARGET_SHARE,
    FairnessShare,
    PilotPeriod,
    duration_text,
    percent,
)
from coffeebuddy.slack.blockkit import BlockDict, context, section


def fairness_share_line(share: FairnessShare) -> str:
    target = percent(FAIRNESS_TARGET_SHARE)
    if share.runs == 0 or share.top_runner is None:
        return f"*Fairness, last {FAIRNESS_DAYS} days:* no finished runs yet."
    people = "person" if share.eligible == 1 else "people"
    return (
        f"*Fairness, last {FAIRNESS_DAYS} days:* the most anyone served is "
        f"{percent(share.share)} (<@{share.top_runner}>, {share.top_runs} of {share.runs} runs) "
        f"— {share.eligible} {people} took part. Target: nobody above {target}."
    )


def fairness_share_blocks(share: FairnessShare) -> list[BlockDict]:
    blocks = [section(fairness_share_line(share), "stats_fairness_share")]
    warning = share.warning()
    if warning is not None:
        blocks.append(context(f"⚠️ {warning}", "stats_fairness_warning"))
    return blocks


def pilot_report_blocks(periods: Sequence[PilotPeriod]) -> list[BlockDict]:
    """The admins' pilot report: one section per period."""
    blocks = [section("*📋 Pilot report* _(admins only)_", "pilot_heading")]
    for period in periods:
        blocks.append(section(period_text(period), f"pilot_{period.days}d"))
    blocks.append(
        context(
            f"Targets: bot steps under {duration_text(OUTCOME_TARGET_SECONDS)} in "
            f"{percent(OUTCOME_TARGET_SHARE)} of runs · failed runs at most "
            f"{percent(FAILED_TARGET_RATIO)} · CSAT {CSAT_TARGET}/5 or more · nobody serving "
            f"more than {percent(FAIRNESS_TARGET_SHARE)}. Bot steps: command to run message, "
            "and close to summary and runner DM (people's time not counted).",
            "pilot_targets",
        )
    )
    return blocks


def period_text(period: PilotPeriod) -> str:
    runs, outcome, csat, fairness = period.runs, period.outcome, period.csat, period.fairness
    failed = f"{runs.failed} failed"
    if runs.failed:
        parts = [
            f"{n} {what}"
            for n, what in (
                (runs.failed_slack, "Slack error"),
                (runs.failed_timeout, "timeout"),
                (runs.failed_internal, "internal"),
            )
            if n
        ]
        failed += f" ({', '.join(parts)}; {percent(runs.failed_ratio)} of finished runs)"
    lines = [
        f"*Last {period.days} days*",
        f"• Runs: {runs.started} started · {runs.closed} completed · {runs.canceled} canceled · "
        f"{failed}",
    ]
    if outcome.measured:
        lines.append(
            f"• Bot time per run: median {duration_text(outcome.median_seconds)} · "
            f"{percent(outcome.within_share)} under {duration_text(OUTCOME_TARGET_SECONDS)} "
            f"({outcome.measured} measured)"
        )
    else:
        lines.append("• Bot time per run: no completed runs measured yet")
    if csat.ratings and csat.average is not None:
        lines.append(f"• CSAT: {csat.average:.1f}/5 from {csat.ratings} ratings")
    else:
        lines.append("• CSAT: no ratings yet")
    if fairness.runs and fairness.top_runner:
        lines.append(
            f"• Fairness: most served by one person {percent(fairness.share)} "
            f"(<@{fairness.top_runner}>) · {fairness.eligible} people took part"
        )
    else:
        lines.append("• Fairness: no completed runs yet")
    return "\n".join(lines)
