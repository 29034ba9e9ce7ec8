"""Blueprints, one per area. Nothing here imports torch or a model library."""
