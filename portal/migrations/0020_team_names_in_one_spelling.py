"""Team names stored before names were kept in Unicode NFC get their NFC spelling (team names are not unique)."""

import unicodedata

from django.db import migrations


def team_names_in_nfc(apps, schema_editor):
    Team = apps.get_model("portal", "Team")
    for team in Team.objects.only("id", "name").iterator():
        name = unicodedata.normalize("NFC", team.name)
        # A name NFC would make longer than its column (U+0958 to U+095F are two characters each) stays as stored.
        if name != team.name and len(name) <= 100:
            Team.objects.filter(pk=team.pk).update(name=name)


class Migration(migrations.Migration):
    dependencies = [
        ("portal", "0019_team_names_in_reading_order"),
    ]

    operations = [
        migrations.RunPython(team_names_in_nfc, migrations.RunPython.noop),
    ]
