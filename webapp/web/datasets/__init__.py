"""The dataset library: list, create, upload, browse, fix captions (pages, api; services beside them)."""
