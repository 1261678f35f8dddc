"""The outbound engine: dispatcher, SMPP connectors, receipt matching, webhooks outbox."""
