"""Samples: a run's gallery and every run's (``pages``), the JSON API (``api``); services beside them:
``sample_requests`` (what a sample request may ask) and ``thumbnails``."""
