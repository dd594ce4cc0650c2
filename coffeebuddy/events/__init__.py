"""Domain events on Kafka: the relay (`relay`, through the Kafka `producer`) publishes the
outbox to Kafka and the tail (`tail`) prints what is there. What an event is and how one is
recorded in the outbox, in the caller's transaction, lives with the other writes in
`coffeebuddy.store.outbox`."""
