"""The `mtx` command: main.py assembles the app from one module a command group."""
