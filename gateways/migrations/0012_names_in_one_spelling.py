"""Key labels and device names stored before names were kept in Unicode NFC get their NFC spelling.

A live key whose label, in NFC, is another live key's label in its team (the two spellings of "Café") is
numbered as 0007 numbered labels already shared: the key already spelled in NFC keeps the label, the other gets
"label (2)" (the first number free). A name NFC would make longer than its column keeps its stored spelling.
"""

import unicodedata

from django.db import migrations


def numbered(label: str, number: int) -> str:
    suffix = f" ({number})"
    return label[: 100 - len(suffix)] + suffix


MAX_LENGTH = 100  # of a label and of a device name


def nfc(text: str) -> str:
    """The NFC spelling, or the text as stored when NFC would make it longer than the column (U+0958 to U+095F
    are two characters each in NFC): a name valid at 100 characters stays valid."""
    composed = unicodedata.normalize("NFC", text)
    return composed if len(composed) <= MAX_LENGTH else text


def labels_in_nfc(apps, schema_editor):
    GatewayKey = apps.get_model("gateways", "GatewayKey")
    keys = list(GatewayKey.objects.order_by("created_at", "id").only("id", "team_id", "label", "revoked_at"))
    # Labels already in NFC are taken first, so a key already spelled the one way keeps its label.
    taken = {(key.team_id, key.label) for key in keys if key.revoked_at is None and key.label == nfc(key.label)}
    for key in keys:
        label = nfc(key.label)
        if label == key.label:
            continue
        if key.revoked_at is None:
            number = 1
            while (key.team_id, label) in taken:
                number += 1
                label = numbered(nfc(key.label), number)
            taken.add((key.team_id, label))
        GatewayKey.objects.filter(pk=key.pk).update(label=label)


def device_names_in_nfc(apps, schema_editor):
    Device = apps.get_model("gateways", "Device")
    for device in Device.objects.only("id", "name").iterator():
        if device.name != nfc(device.name):
            Device.objects.filter(pk=device.pk).update(name=nfc(device.name))


class Migration(migrations.Migration):
    dependencies = [
        ("gateways", "0011_revoked_keys_need_no_vault_key"),
    ]

    operations = [
        migrations.RunPython(labels_in_nfc, migrations.RunPython.noop),
        migrations.RunPython(device_names_in_nfc, migrations.RunPython.noop),
    ]
