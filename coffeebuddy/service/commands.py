"""`/coffee …`: read the text and hand it to the use case it names."""

from __future__ import annotations

import coffeebuddy.domain.command as cmdparse
from coffeebuddy.domain.fairness import RULE_SUMMARY
from coffeebuddy.service import inbox
from coffeebuddy.service.admin import AdminService
from coffeebuddy.service.common import Interaction, Reply
from coffeebuddy.service.privacy import PrivacyService
from coffeebuddy.service.runs import RunService
from coffeebuddy.service.stats import StatsService
from coffeebuddy.slack import run_blocks


class Commands:
    def __init__(
        self,
        runs: RunService,
        admin: AdminService,
        stats: StatsService,
        privacy: PrivacyService,
    ) -> None:
        self.runs = runs
        self.admin = admin
        self.stats = stats
        self.privacy = privacy

    def handle(self, ia: Interaction, text: str) -> Reply:
        try:
            parsed = cmdparse.parse_command(text)
        except cmdparse.CommandError as exc:
            return Reply(exc.hint)
        # Starting a run checks the workspace in its own transaction (one per /coffee).
        if not isinstance(parsed, cmdparse.ShowHelp | cmdparse.StartRun) and (
            refusal := self.runs.workspace_refusal(ia.actor)
        ):
            return Reply(refusal)
        match parsed:
            case cmdparse.ShowHelp():
                return Reply(
                    run_blocks.help_text(RULE_SUMMARY), blocks=run_blocks.help_blocks(RULE_SUMMARY)
                )
            case cmdparse.Admin(action=action):
                return self.admin.command(ia, action)
            case cmdparse.ShowStats():
                return self.stats.show(ia.actor)
            case cmdparse.ForgetMe():
                # An order of theirs still in the inbox would save their usual again after
                # it was forgotten: it is applied first.
                if self.runs.config.inbox:
                    inbox.drain_person(self.runs, ia.actor.user_id)
                return self.privacy.forget_me(ia.actor)
            case cmdparse.StartRun():
                return self.runs.start(ia, parsed)
