"""Tokaify's preset row "Base URL ends in /v1" named https://api.tokaify.com, which stayed after staff pointed the
gateway at another address (a base-URL change keeps the preset's rules). The row now says {base_url}, which the
set-up and catalogue pages fill with the gateway's own (Gateway.troubleshooting_rows).

Only a preset's row that still holds the preset's exact words is rewritten: an edited row is the staff's, kept.
"""

from django.db import migrations

SYMPTOM = "Base URL ends in /v1"
OLD_FIX = "Claude Code builds the request path itself: use https://api.tokaify.com, not .../v1."
NEW_FIX = "Claude Code builds the request path itself: use {base_url}, not .../v1."


def _rewrite(apps, old: str, new: str) -> None:
    Gateway = apps.get_model("gateways", "Gateway")
    for gateway in Gateway.objects.filter(is_preset=True):
        rows = gateway.troubleshooting
        if not isinstance(rows, list) or [SYMPTOM, old] not in rows:
            continue
        gateway.troubleshooting = [[SYMPTOM, new] if row == [SYMPTOM, old] else row for row in rows]
        gateway.save(update_fields=["troubleshooting"])


def name_the_base_url(apps, schema_editor):
    _rewrite(apps, OLD_FIX, NEW_FIX)


def name_the_address_again(apps, schema_editor):
    """Back to code that shows rows word for word: every {base_url}, the preset's or one staff typed since, becomes
    the gateway's own address, so no page of the older release shows the placeholder."""
    Gateway = apps.get_model("gateways", "Gateway")
    for gateway in Gateway.objects.all():  # a catalogue: a handful of rows
        rows = gateway.troubleshooting
        if not isinstance(rows, list):
            continue
        filled = [
            [cell.replace("{base_url}", gateway.base_url) if isinstance(cell, str) else cell for cell in row]
            if isinstance(row, list)
            else row
            for row in rows
        ]
        if filled != rows:
            gateway.troubleshooting = filled
            gateway.save(update_fields=["troubleshooting"])


class Migration(migrations.Migration):
    dependencies = [("gateways", "0014_keys_in_reading_order")]
    operations = [migrations.RunPython(name_the_base_url, name_the_address_again)]
