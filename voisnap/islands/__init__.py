"""The islands: asyncio-only libraries behind one narrow seam each.

Only this package may import asyncio (tests/test_architecture.py). An island
runs its library in a thread with its own event loop or, where the library
holds the GIL for long, in a child process; the rest of voisnap reaches it
through a trio-side door that never imports asyncio itself:

- ``webrtc`` (the door) and ``webrtc_worker`` (the child process): aiortc,
  the WebRtcHub's media endpoint (docs/hubs/voisnap-webrtc.md).
- ``nats`` (door and thread in one module): nats-py, the event bus of
  ``/v1/events`` (``NatsBus``).
"""
