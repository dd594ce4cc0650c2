"""Running the whole service on one machine: `scripts/run`'s runner, its embedded
Postgres and the reaper that cleans up after a killed runner."""
