"""The WSGI entry point: `gunicorn wsgi:app` (otweb serve, otweb web and the systemd unit use it).

Settings come from the environment (OTWEB_WORKSPACE, OTWEB_CONFIG_DIR, REDIS_URL, ...).
"""
from webapp import create_app

app = create_app()
