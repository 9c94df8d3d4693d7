import os
import sys

from django.core.exceptions import ImproperlyConfigured
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
try:
    application = get_wsgi_application()
except ImproperlyConfigured as exc:
    # Exit status 3 is gunicorn's "worker failed to boot": it stops instead of respawning forever.
    sys.stderr.write(f"Configuration error: {exc}\n")
    raise SystemExit(3) from None
