"""No two team slugs differ only in case. Slugs already clashing stop the migration with their names:
renaming one changes its URLs, so the operator picks which, rather than the migration."""

from collections import defaultdict

from django.core.management.base import CommandError
from django.db import migrations, models
from django.db.models.functions import Lower

import portal.models


def refuse_slugs_differing_only_in_case(apps, schema_editor):
    Team = apps.get_model("portal", "Team")
    by_lowercase = defaultdict(list)
    for slug in sorted(Team.objects.values_list("slug", flat=True)):  # sorted here: collations differ
        by_lowercase[slug.lower()].append(slug)
    clashes = [slugs for slugs in by_lowercase.values() if len(slugs) > 1]
    if clashes:
        named = "; ".join(" and ".join(repr(slug) for slug in slugs) for slugs in clashes)
        raise CommandError(
            f"Teams {named} have slugs that differ only in case, which the portal no longer allows. Rename all "
            'but one of each, for example: manage.py shell -c "from portal.models import Team; '
            f'Team.objects.filter(slug={clashes[0][0]!r}).update(slug={clashes[0][0].lower() + "-2"!r})", '
            "then run migrate again. A renamed team's pages and API paths move to its new slug."
        )


class Migration(migrations.Migration):
    dependencies = [
        ("portal", "0014_unconfirmed_email"),
    ]

    operations = [
        migrations.RunPython(refuse_slugs_differing_only_in_case, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="team",
            name="slug",
            field=models.SlugField(unique=True, validators=[portal.models.validate_lowercase_slug]),
        ),
        migrations.AddConstraint(
            model_name="team",
            constraint=models.UniqueConstraint(
                Lower("slug"),
                name="team_slug_lowercase_unique",
                violation_error_message="A team with this slug in another case already exists.",
            ),
        ),
    ]
