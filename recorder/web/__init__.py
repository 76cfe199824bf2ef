"""The web pages the daemon serves (read-only, server-rendered, no script)."""
