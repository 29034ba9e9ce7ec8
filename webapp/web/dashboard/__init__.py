"""The dashboard: the current run, Start, its commands and the queue (``pages``), and the JSON API for the
current training and the health check (``api``)."""
