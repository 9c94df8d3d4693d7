"""A revoked key's secret is destroyed; before this, its row kept the id of the vault key that had sealed it.

`/readyz` checks that the keyring holds every key id the stored secrets need, so an old key removed after
`rotate_encryption_key` (which has nothing to move for a revoked key) made the portal unready for good.
Revoking now clears the id with the secret; this clears it on the keys revoked before.
"""

from django.db import migrations


def forget_key_ids_of_destroyed_secrets(apps, schema_editor):
    GatewayKey = apps.get_model("gateways", "GatewayKey")
    GatewayKey.objects.filter(secret_ciphertext="").exclude(secret_key_id="").update(secret_key_id="")


class Migration(migrations.Migration):
    dependencies = [("gateways", "0010_key_settings_changed_at")]

    # Backwards: nothing to put back, and a key id without its secret served nothing.
    operations = [migrations.RunPython(forget_key_ids_of_destroyed_secrets, migrations.RunPython.noop)]
