"""When what a live device's settings.json holds last changed, apart from the key's rotations.

Until now config_changed_at was the only stamp, and a rotation overwrote it: a settings change followed by a
rotation no longer told the devices installed before it to install again. Existing keys get the best time known.
"""

import django.utils.timezone
from django.db import migrations, models
from django.db.models.functions import Greatest, Least


def date_the_settings(apps, schema_editor):
    """A key whose last change was of settings (or that never rotated) keeps that time, config_changed_at.

    A key whose last change was a rotation overwrote the time of any settings change before it. Its gateway's
    updated_at still tells when the gateway last changed, so a device installed before that is told to install
    again; a change of the key's own settings before a rotation cannot be recovered, so that key counts from its
    creation, as the portal showed it until now (no device asked to install again).
    """
    GatewayKey = apps.get_model("gateways", "GatewayKey")
    Gateway = apps.get_model("gateways", "Gateway")
    rotated_last = models.Q(rotated_at__isnull=False, rotated_at__gte=models.F("config_changed_at"))
    GatewayKey.objects.exclude(rotated_last).update(settings_changed_at=models.F("config_changed_at"))
    gateway_changed = models.Subquery(Gateway.objects.filter(pk=models.OuterRef("gateway_id")).values("updated_at")[:1])
    GatewayKey.objects.filter(rotated_last).update(
        settings_changed_at=Least(Greatest(models.F("created_at"), gateway_changed), models.F("rotated_at"))
    )


class Migration(migrations.Migration):
    dependencies = [
        ("gateways", "0009_gateway_slug_lowercase_unique"),
    ]

    operations = [
        migrations.AddField(
            model_name="gatewaykey",
            name="settings_changed_at",
            field=models.DateTimeField(default=django.utils.timezone.now, editable=False),
        ),
        migrations.RunPython(date_the_settings, migrations.RunPython.noop),
    ]
