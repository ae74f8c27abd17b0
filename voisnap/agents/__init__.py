"""Agents: what answers a chat message, and the runtime that runs them as tasks."""
