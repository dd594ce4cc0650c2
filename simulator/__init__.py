"""Plays Slack against a running CoffeeBuddy: the Web API it calls (``FakeSlack``) and the
people in a channel (signed slash commands, button clicks, modal submissions), with a
readable transcript of what they saw.

- ``simulator.people``: ``Simulator`` (thread-safe low-level calls, for load tests) and
  ``Person`` (one user's step-by-step actions, for the demo and end-to-end tests).
- ``simulator.transcript``: the channel, the ephemeral answers and the DMs as text.
- ``simulator.demo``: ``python -m simulator.demo`` (``make demo``) plays a whole run.
"""

from simulator.people import (
    Button,
    Click,
    CommandResult,
    HttpAnswer,
    Person,
    SimulationError,
    Simulator,
    Submission,
)
from simulator.transcript import render_transcript

__all__ = [
    "Button",
    "Click",
    "CommandResult",
    "HttpAnswer",
    "Person",
    "SimulationError",
    "Simulator",
    "Submission",
    "render_transcript",
]
