"""Model versions: the list, a version, compare (``pages``), the JSON API (``api``); services beside them:
``views`` (versions as people see them, lineage) and ``files`` (downloads, datasets recorded with a version)."""
