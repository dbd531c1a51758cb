"""Help desks from the service's side: the configured connectors, the outbox that writes
answers back, and history imports. Imports the store."""
