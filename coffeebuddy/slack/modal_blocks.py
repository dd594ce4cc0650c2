"""Block Kit for the two forms of a run: a person's order, and the initiator's edit of the
pickup time and note. Their block, action and callback ids are in
`coffeebuddy.slack.run_blocks`, with the rest of the contract with the interaction handlers.
"""

from __future__ import annotations

import json
from datetime import datetime

from slack_sdk.models.blocks import (
    Block,
    CheckboxesElement,
    ContextBlock,
    InputBlock,
    Option,
    PlainTextInputElement,
    PlainTextObject,
)
from slack_sdk.models.views import View

from coffeebuddy.domain.models import MAX_NOTE_CHARS, MAX_ORDER_CHARS
from coffeebuddy.slack.blockkit import BlockDict, escape, mrkdwn, pickup_text
from coffeebuddy.slack.run_blocks import (
    CALLBACK_ORDER_MODAL,
    CALLBACK_RUN_MODAL,
    NOTE_ACTION_ID,
    NOTE_BLOCK_ID,
    ORDER_ACTION_ID,
    ORDER_BLOCK_ID,
    ORDER_PLACEHOLDER,
    PICKUP_ACTION_ID,
    PICKUP_BLOCK_ID,
    VOLUNTEER_ACTION_ID,
    VOLUNTEER_BLOCK_ID,
    VOLUNTEER_OPTION_TEXT,
    VOLUNTEER_OPTION_VALUE,
)

# Slack keeps a view's private_metadata up to 3,000 characters; a response_url is ~100.
MAX_REPLY_URL_CHARS = 1000


def form_metadata(run_id: str, response_url: str | None) -> str:
    """An order form's private_metadata: the run id, and the response_url of the click
    that opened the form. The form's confirmation goes through that URL (as a click's
    does) rather than chat.postEphemeral, which Slack limits to 100 calls a minute: a
    channel of 300 saving their orders at once would wait three minutes for it."""
    if not response_url or len(response_url) > MAX_REPLY_URL_CHARS:
        return run_id
    return json.dumps({"run": run_id, "response_url": response_url}, separators=(",", ":"))


def read_form_metadata(metadata: object) -> tuple[object, str | None]:
    """(run id, response_url) from a run form's private_metadata: plain run ids (forms
    opened before the URL was kept, and the edit-run form) have no URL. Neither is
    checked here: the caller parses the id, and the URL is only ever used through the
    response_url allow-list."""
    if not isinstance(metadata, str) or not metadata.startswith("{"):
        return metadata, None
    try:
        parsed = json.loads(metadata)
    except ValueError:
        return None, None
    if not isinstance(parsed, dict):
        return None, None
    url = parsed.get("response_url")
    return parsed.get("run"), url if isinstance(url, str) and url else None


def order_modal(
    run_id: str,
    *,
    current_text: str | None,
    volunteer: bool,
    pickup: datetime | None,
    note: str | None,
    response_url: str | None = None,
) -> BlockDict:
    """The `view` for views.open; with current_text set it edits an order (and its dismiss
    button says "Close": "Cancel" would read as "cancel my order"). `response_url` is the
    opening click's: the saved order's confirmation goes there."""
    blocks: list[Block] = []
    details = []
    if pickup is not None:
        details.append(f"*Pickup:* {pickup_text(pickup)}")
    if note:
        details.append(f"*Note:* {escape(note)}")
    if details:
        blocks.append(ContextBlock(elements=[mrkdwn("\n".join(details))]))

    blocks.append(
        InputBlock(
            block_id=ORDER_BLOCK_ID,
            label="Your order",
            element=PlainTextInputElement(
                action_id=ORDER_ACTION_ID,
                placeholder=ORDER_PLACEHOLDER,
                # The stored text is already within the limit; the slice only guards
                # against Slack rejecting the whole view over an over-long initial value.
                initial_value=current_text[:MAX_ORDER_CHARS] if current_text else None,
                max_length=MAX_ORDER_CHARS,
            ),
        )
    )
    option = Option(value=VOLUNTEER_OPTION_VALUE, text=PlainTextObject(text=VOLUNTEER_OPTION_TEXT))
    blocks.append(
        InputBlock(
            block_id=VOLUNTEER_BLOCK_ID,
            label="Runner",
            # An input block (not an actions block) so the choice arrives in the
            # view_submission state; optional so leaving it unticked is valid.
            optional=True,
            element=CheckboxesElement(
                action_id=VOLUNTEER_ACTION_ID,
                options=[option],
                initial_options=[option] if volunteer else None,
            ),
        )
    )
    return View(
        type="modal",
        callback_id=CALLBACK_ORDER_MODAL,
        title="Coffee order",
        submit="Save order",
        close="Close" if current_text else "Cancel",
        private_metadata=form_metadata(run_id, response_url),
        blocks=blocks,
    ).to_dict()


def run_modal(run_id: str, *, pickup_local: str | None, note: str | None) -> BlockDict:
    """The initiator's form to change the pickup time or note of an open run.

    `pickup_local` is the current pickup written in the initiator's own time zone
    (e.g. "10:30"); the form takes the same forms as `/coffee`.
    """
    blocks: list[Block] = [
        InputBlock(
            block_id=PICKUP_BLOCK_ID,
            label="Pickup time",
            hint="Like 10:30, 3pm or in 20m, in your time zone. Leave empty for no set time.",
            optional=True,
            element=PlainTextInputElement(
                action_id=PICKUP_ACTION_ID,
                placeholder="e.g. 10:30 or in 20m",
                initial_value=pickup_local or None,
                max_length=40,
            ),
        ),
        InputBlock(
            block_id=NOTE_BLOCK_ID,
            label="Note",
            optional=True,
            element=PlainTextInputElement(
                action_id=NOTE_ACTION_ID,
                placeholder="e.g. Lobby cafe",
                initial_value=note or None,
                max_length=MAX_NOTE_CHARS,
            ),
        ),
    ]
    return View(
        type="modal",
        callback_id=CALLBACK_RUN_MODAL,
        title="Edit coffee run",
        submit="Save",
        close="Cancel",
        private_metadata=run_id,
        blocks=blocks,
    ).to_dict()
