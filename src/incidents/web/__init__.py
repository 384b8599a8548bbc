"""The web console: server-rendered pages over the same services and policy as the API."""
