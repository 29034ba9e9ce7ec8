"""The OpenAPI document (``routes``: /api/openapi.json and the docs page), built by ``spec`` from the table of
operations (``operations``) and the schemas (``schemas``)."""
