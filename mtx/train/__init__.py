"""Training: the loop (loop.py) and what it runs on: the update step, loss, schedule and time budget, weight
averaging, resumable states, several processes (torchrun), validation, the log and its curves."""
