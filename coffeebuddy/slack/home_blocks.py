"""Block Kit for the App Home tab: a quick start, the person's usual and runs served per
channel, and the fairness rule. Pure functions of data; only the person sees it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from slack_sdk.models.blocks import (
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    PlainTextObject,
)

from coffeebuddy.slack.blockkit import BlockDict, escape, mrkdwn, section
from coffeebuddy.slack.stats_blocks import last_run_text

# A Home view holds at most 100 blocks; two per channel plus the fixed ones stays well
# inside, and nobody scrolls past this many channels.
MAX_CHANNELS: Final = 30

QUICK_START: Final = "\n".join(
    [
        "*Quick start* — your first run takes a minute:",
        "1. In a channel, invite me once: `/invite @CoffeeBuddy`",
        "2. Start a run: `/coffee 10:30 Lobby cafe` (time and place are optional)",
        "3. Everyone taps *Order / change*, *Use my usual* or *I'll go* on the run message",
        "4. Whoever started it taps *Close run* (or it closes at its *order by* time): I pick "
        "the runner, post the orders, DM the runner the list and remind them before pickup",
        "`/coffee help` in any channel shows everything else.",
    ]
)


@dataclass(frozen=True)
class HomeChannel:
    slack_channel_id: str
    usual: str | None
    served: int
    joined: int
    last_served_at: datetime | None


def home_view(channels: Sequence[HomeChannel], rule_summary: str) -> BlockDict:
    """The `view` for views.publish: the person's own runs first (what they come back
    for), then the quick start and the rule."""
    blocks: list[BlockDict] = [HeaderBlock(text=PlainTextObject(text="☕ CoffeeBuddy")).to_dict()]
    if channels:
        blocks.append(section("*Your coffee runs*", "home_channels_heading"))
        for channel in channels[:MAX_CHANNELS]:
            blocks.append(section(channel_text(channel), f"home_{channel.slack_channel_id}"))
    else:
        blocks.append(
            section(
                "*Your coffee runs*\nNothing yet — once you order in a run, your usual and "
                "the runs you served show up here.",
                "home_channels_heading",
            )
        )
    blocks.append(DividerBlock().to_dict())
    blocks.append(section(QUICK_START, "home_quick_start"))
    blocks.append(DividerBlock().to_dict())
    blocks.append(
        ContextBlock(
            elements=[mrkdwn(f"*Who goes:* {rule_summary}")],
            block_id="home_rule",
        ).to_dict()
    )
    return {"type": "home", "callback_id": "coffeebuddy_home", "blocks": blocks}


def channel_text(channel: HomeChannel) -> str:
    usual = (
        f"your usual: _{escape(channel.usual)}_"
        if channel.usual
        else "no usual yet (your last order becomes it)"
    )
    runs = "run" if channel.served == 1 else "runs"
    served = f"you served {channel.served} {runs}"
    if channel.last_served_at is not None:
        served += f", last {last_run_text(channel.last_served_at)}"
    return f"<#{channel.slack_channel_id}> — {usual}\n{served} · ordered in {channel.joined}"
