"""The edges of ragtune: Settings, wiring, HTTP routers, CLI and web page."""
