"""The hub framework: Hub classes, their invocation, and the per-connection runtime."""
