#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line
    from django.db import InterfaceError, OperationalError

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:
        # A configuration mistake is a sentence for the operator, not a traceback.
        sys.stderr.write(f"Configuration error: {exc}\n")
        sys.exit(1)
    except (OperationalError, InterfaceError) as exc:
        # A database that is down or refuses the portal: a sentence naming it, not thirty lines of driver frames.
        if "--traceback" in sys.argv:
            raise
        from portal.outages import command_sentence

        sys.stderr.write(command_sentence(exc) + "\n")
        sys.exit(1)
