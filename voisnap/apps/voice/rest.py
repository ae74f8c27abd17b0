"""``GET`` and ``PUT /voice/preferences``: how the caller listens (docs/voice.md, "Preferences").

A user who never saved any gets the server's defaults (``--stt-provider``,
``Auto``, ``--voice-pause``). A save replaces all three fields; each is checked.
"""

from __future__ import annotations

import math
from typing import Any

from ...server.routes import RestRequest, Route
from ...storage.base import Owner, VoicePreferences, VoiceStore, utc_now
from .listening import MODES, PROVIDERS

MAX_PAUSE = 10.0
MIN_PAUSE = 0.2


class VoiceRest:
    def __init__(self, store: VoiceStore, defaults: VoicePreferences) -> None:
        self._store = store
        self._defaults = defaults

    def routes(self) -> list[Route]:
        return [
            Route.of("GET", "/voice/preferences", self.get),
            Route.of("PUT", "/voice/preferences", self.put),
        ]

    async def get(self, request: RestRequest) -> tuple[int, Any]:
        owner = _owner(request)
        saved = await self._store.get_voice_preferences(owner)
        return 200, view(saved or self._defaults)

    async def put(self, request: RestRequest) -> tuple[int, Any]:
        body = request.json()
        if not isinstance(body, dict):
            return 400, {"error": "The body must be a JSON object {provider, mode, pause}."}
        provider, mode, pause = body.get("provider"), body.get("mode"), body.get("pause")
        if provider not in PROVIDERS:
            return 400, {"error": f"'provider' must be one of {', '.join(PROVIDERS)}."}
        if mode not in MODES:
            return 400, {"error": f"'mode' must be one of {', '.join(MODES)}."}
        if (
            isinstance(pause, bool)
            or not isinstance(pause, int | float)
            or not math.isfinite(pause)
            or not MIN_PAUSE <= pause <= MAX_PAUSE
        ):
            return 400, {"error": f"'pause' must be seconds from {MIN_PAUSE:g} to {MAX_PAUSE:g}."}
        saved = VoicePreferences(_owner(request), provider, mode, float(pause), utc_now())
        await self._store.put_voice_preferences(saved)
        return 200, view(saved)


def view(preferences: VoicePreferences) -> dict[str, Any]:
    return {"provider": preferences.provider, "mode": preferences.mode, "pause": preferences.pause}


def _owner(request: RestRequest) -> Owner:
    return Owner(request.principal.tenant_id, request.principal.user_id)
