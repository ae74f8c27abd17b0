"""Each user's listening preferences (docs/voice.md, "Preferences"), one row per user."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .base import Owner, VoicePreferences

COLUMNS = "tenant_id, user_id, provider, mode, pause, updated_at"


class VoiceQueries:
    """The voice part of ``SqlStore`` (it supplies ``_run`` and ``dialect``)."""

    dialect: Any
    _run: Callable[..., Any]

    async def get_voice_preferences(self, owner: Owner) -> VoicePreferences | None:
        def work(db: Any) -> VoicePreferences | None:
            row = db.execute(
                f"SELECT {COLUMNS} FROM voice_preferences WHERE tenant_id = ? AND user_id = ?",
                (owner.tenant_id, owner.user_id),
            ).fetchone()
            if row is None:
                return None
            return VoicePreferences(
                Owner(row[0], row[1]), row[2], row[3], row[4], self.dialect.time_out(row[5])
            )

        return await self._run(work)

    async def put_voice_preferences(self, preferences: VoicePreferences) -> None:
        owner = preferences.owner
        row = (
            owner.tenant_id,
            owner.user_id,
            preferences.provider,
            preferences.mode,
            preferences.pause,
            self.dialect.time_in(preferences.updated_at),
        )
        # Both databases know ON CONFLICT ... DO UPDATE (SQLite since 3.24).
        await self._run(
            lambda db: db.execute(
                f"INSERT INTO voice_preferences ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (tenant_id, user_id) DO UPDATE SET provider = excluded.provider, "
                "mode = excluded.mode, pause = excluded.pause, updated_at = excluded.updated_at",
                row,
            )
        )
