"""Transports: bytes in and out of one connection, no hub logic (TransportProtocols.md)."""
