"""The server: one listener, the front door that splits hub WebSockets from
HTTP, the ASGI app hypercorn serves, auth, and the connection registry."""
