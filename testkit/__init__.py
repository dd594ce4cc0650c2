"""What the tests, the simulator and the benchmarks share: fake Slack, Vault and OIDC
servers (fakes/), signed Slack payloads, the service started as processes, a local Kafka
broker. Kept out of tests/ so that nothing outside the tests imports from them."""

# The bot token the fake Slack accepts and every test configuration carries.
BOT_TOKEN = "xoxb-test-0000-bot-token"
