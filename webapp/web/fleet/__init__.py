"""The fleet page and its API (``pages``); ``status`` (each worker as people see it, drain, remove) and
``workers`` (live workers for the run pages and the System page)."""
