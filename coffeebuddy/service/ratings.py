"""CSAT: the one-tap rating on a closed run's summary.

Anyone who took part (started it, served it, or ordered) rates once per run and may change
it; anyone else is refused politely. The only messages are an ephemeral answer to the
person who tapped and an in-place update of the summary showing the run's average — no
extra DMs or channel posts (the spec warns against over-notification).
"""

from __future__ import annotations

import logging

from coffeebuddy.config import Config
from coffeebuddy.db import Database
from coffeebuddy.domain.models import RunStatus
from coffeebuddy.metrics import CSAT_RATINGS
from coffeebuddy.service.common import Interaction, misplaced
from coffeebuddy.service.effects import queue_ephemeral
from coffeebuddy.store import queue, ratings

log = logging.getLogger(__name__)

NOT_A_PARTICIPANT_TEXT = (
    "Thanks for wanting to rate it! Only people who took part in this run (ordered, "
    "started or ran it) can rate it."
)


class RatingService:
    def __init__(self, database: Database, config: Config) -> None:
        self.db = database
        self.config = config

    def rate(self, ia: Interaction, score: int) -> None:
        actor, run_id = ia.actor, ia.run
        response_url, correlation_id = ia.response_url, ia.correlation_id
        if score not in range(1, 6):
            raise ValueError(f"a rating is 1 to 5, not {score}")
        with self.db.transaction() as conn:
            run = ratings.run_for(conn, run_id, actor.user_id)
            answer: str
            if run is None:
                answer = "That coffee run doesn't exist any more, so it can't be rated."
            elif refusal := misplaced(
                actor, team_id=run.slack_team_id, channel_id=run.slack_channel_id
            ):
                # A button replayed from elsewhere: the summary lives in the run's channel.
                answer = refusal
            elif run.status != RunStatus.CLOSED:
                answer = "Only a completed coffee run can be rated."
            elif not run.took_part or run.user_id is None:
                answer = NOT_A_PARTICIPANT_TEXT
            else:
                previous = ratings.save(conn, run_id, run.user_id, score)
                answer = _thanks(score, previous)
                if previous != score:
                    # The summary shows the run's average; taps within the coalescing
                    # window become one chat.update.
                    queue.enqueue(
                        conn,
                        queue.UPDATE_SUMMARY,
                        {"run_id": str(run_id)},
                        run_id=run_id,
                        correlation_id=run.correlation_id,
                        delay_seconds=self.config.refresh_coalesce_ms / 1000,
                        dedupe_key=f"summary:{run_id}",
                    )
                    CSAT_RATINGS.labels(str(score)).inc()
                    log.info("run_rated", extra={"score": score, "changed": previous is not None})
            queue_ephemeral(
                conn,
                run_id if run is not None else None,
                channel=actor.channel_id,
                user=actor.user_id,
                text=answer,
                response_url=response_url,
                correlation_id=correlation_id,
            )


def _thanks(score: int, previous: int | None) -> str:
    if previous is None:
        return f"Thanks — you rated this run {score}/5. Tap another number to change it."
    if previous == score:
        return f"You already rated this run {score}/5."
    return f"Changed: you now rate this run {score}/5 (was {previous}/5)."
