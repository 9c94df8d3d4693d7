"""Expiries a day from either end of the calendar, which the portal accepted before it checked for them, moved to
the nearest time every zone can write (gateways.rules.EARLIEST_EXPIRY, LATEST_EXPIRY): a page that wrote one in
TIME_ZONE failed. Both mean "never" or "always" alike; nothing to undo."""

from datetime import UTC, datetime, timedelta

from django.db import migrations

EARLIEST = datetime.min.replace(tzinfo=UTC) + timedelta(days=1)  # gateways.rules, as it was when this was written
LATEST = datetime.max.replace(tzinfo=UTC) - timedelta(days=1)


def within_the_calendar(apps, schema_editor):
    GatewayKey = apps.get_model("gateways", "GatewayKey")
    GatewayKey.objects.filter(expires_at__gt=LATEST).update(expires_at=LATEST.replace(microsecond=0))
    GatewayKey.objects.filter(expires_at__lt=EARLIEST).update(expires_at=EARLIEST)


class Migration(migrations.Migration):
    dependencies = [("gateways", "0015_troubleshooting_names_the_base_url")]

    operations = [migrations.RunPython(within_the_calendar, migrations.RunPython.noop)]
