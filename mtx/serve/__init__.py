"""Serving: LibreTranslate's HTTP API over a translator, with dynamic batching (service.py, app.py), and the load
test that measures it (loadtest.py)."""
