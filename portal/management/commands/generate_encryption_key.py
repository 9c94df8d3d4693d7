from django.core.management.base import BaseCommand

from portal.crypto import generate_key


class Command(BaseCommand):
    help = "Print a new key for PORTAL_ENCRYPTION_KEYS or PORTAL_AUDIT_KEYS (32 random bytes, URL-safe base64)."

    def handle(self, **options):
        self.stdout.write(generate_key())
