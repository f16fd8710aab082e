"""Events: the change feed (outbox), its sequencing and delivery to FHIR Subscriptions (R4
Subscriptions Backport IG) and to NATS JetStream. See docs/events.md."""
