"""The trainer side. Only modules under builtin/ (and backends) import torch; protocol,
callbacks and commands are plain Python so that the web and the worker can use them."""
