"""WSGI entry point: `gunicorn app:app`."""

import os

from coffeebuddy.entry import web_app

app = web_app(os.environ)
