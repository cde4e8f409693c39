"""The scheduler: filters, scores, assume-and-bind. Entry point ``python -m berth.scheduler``."""
