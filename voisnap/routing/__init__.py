"""Who receives what: the per-connection outbox and the group router."""
