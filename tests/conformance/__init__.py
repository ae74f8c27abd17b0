"""Conformance: unmodified SignalR clients (the official npm client under Node,
and the Python clients from PyPI) against a real ``voisnap serve`` process."""
