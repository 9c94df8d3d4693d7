"""A key's label is unique among its team's live keys; labels already shared get a number first."""

from django.conf import settings
from django.db import migrations, models


def numbered(label: str, number: int) -> str:
    """`label (n)` within the 100 characters a label may have: the label shortened, never the number, or a
    long label would come back as itself (taken) for every n, and the loop below would never end."""
    suffix = f" ({number})"
    return label[: 100 - len(suffix)] + suffix


def number_shared_labels(apps, schema_editor):
    """Keys that share a label in a team keep it in creation order: the first as is, then "label (2)", ..."""
    GatewayKey = apps.get_model("gateways", "GatewayKey")
    live = GatewayKey.objects.filter(revoked_at__isnull=True).order_by("team_id", "label", "created_at", "id")
    taken = set(live.values_list("team_id", "label"))
    seen = set()
    for key in live.iterator():
        if (key.team_id, key.label) not in seen:
            seen.add((key.team_id, key.label))
            continue
        number = 2
        while (key.team_id, numbered(key.label, number)) in taken:
            number += 1
        key.label = numbered(key.label, number)
        taken.add((key.team_id, key.label))
        key.save(update_fields=["label"])


class Migration(migrations.Migration):
    dependencies = [
        ("gateways", "0006_rotation_and_probe_claims"),
        ("portal", "0004_self_assigned_action"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RunPython(number_shared_labels, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="gatewaykey",
            constraint=models.UniqueConstraint(
                condition=models.Q(("revoked_at__isnull", True)), fields=("team", "label"), name="unique_label_per_team"
            ),
        ),
    ]
