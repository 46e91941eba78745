"""The transactional outbox that publishes every app's current state to `capps.apps.v1`."""
