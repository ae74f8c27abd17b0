"""Each user's listening preferences (issue 16): one row per user, replaced by a save.

On SQLite and on a real PostgreSQL (``conftest``). Times are fixed (``records.at``).
"""

from __future__ import annotations

from voisnap.storage.base import VoicePreferences
from voisnap.storage.sql import SqlStore

from .records import ADA, ADA_ELSEWHERE, BOB, at


async def test_store_voice_preferences_are_each_users_own(store: SqlStore) -> None:
    assert await store.get_voice_preferences(ADA) is None
    await store.put_voice_preferences(VoicePreferences(ADA, "sphinx", "Manual", 0.8, at(1)))
    await store.put_voice_preferences(VoicePreferences(BOB, "openai", "Auto", 0.5, at(2)))
    await store.put_voice_preferences(VoicePreferences(ADA, "sphinx", "Auto", 1.25, at(3)))
    assert await store.get_voice_preferences(ADA) == VoicePreferences(
        ADA, "sphinx", "Auto", 1.25, at(3)
    )
    assert (await store.get_voice_preferences(BOB)).provider == "openai"  # type: ignore[union-attr]
    assert await store.get_voice_preferences(ADA_ELSEWHERE) is None
