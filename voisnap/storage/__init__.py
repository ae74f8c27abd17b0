"""Where sessions, messages and tasks are kept (``Store``; SQLite by default)."""
