"""Transport tests: every one runs against a real ``voisnap serve`` process on
127.0.0.1 (port 0) and talks to it over real sockets (STYLE.md, "Tests")."""
