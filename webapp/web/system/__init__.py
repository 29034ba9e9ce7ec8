"""The System page and its API (``pages``); ``status`` (resources, processes, the live widgets)."""
