"""The app as the tests build it: TESTING on, a workspace, a configs folder and a Redis."""
from __future__ import annotations

from webapp import create_app


def make_app(workspace, config_dir, redis_url: str, **config):
    """create_app() on these folders and this Redis; ``config`` adds or overrides keys."""
    return create_app({"TESTING": True, "WORKSPACE": workspace, "CONFIG_DIR": config_dir, "REDIS_URL": redis_url,
                       **config})
