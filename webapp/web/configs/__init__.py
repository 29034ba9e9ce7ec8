"""Configs: the library and the editor (``pages``), the JSON API (``api``); services beside them: ``files``
(the config library on disk, the data roots) and ``scans`` (dataset scans off the request path)."""
