"""No two gateway slugs differ only in case. Slugs already clashing stop the migration with their names:
a slug names the gateway in downloaded files and URLs, so the operator picks which to rename."""

from collections import defaultdict

from django.core.management.base import CommandError
from django.db import migrations, models
from django.db.models.functions import Lower

import portal.models


def refuse_slugs_differing_only_in_case(apps, schema_editor):
    Gateway = apps.get_model("gateways", "Gateway")
    by_lowercase = defaultdict(list)
    for slug in sorted(Gateway.objects.values_list("slug", flat=True)):  # sorted here: collations differ
        by_lowercase[slug.lower()].append(slug)
    clashes = [slugs for slugs in by_lowercase.values() if len(slugs) > 1]
    if clashes:
        named = "; ".join(" and ".join(repr(slug) for slug in slugs) for slugs in clashes)
        raise CommandError(
            f"Gateways {named} have slugs that differ only in case, which the portal no longer allows. Rename all "
            'but one of each, for example: manage.py shell -c "from gateways.models import Gateway; '
            f'Gateway.objects.filter(slug={clashes[0][0]!r}).update(slug={clashes[0][0].lower() + "-2"!r})", '
            "then run migrate again. A renamed gateway's pages, API paths and download names follow its new slug."
        )


class Migration(migrations.Migration):
    dependencies = [
        ("gateways", "0008_connection_list_indexes"),
    ]

    operations = [
        migrations.RunPython(refuse_slugs_differing_only_in_case, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="gateway",
            name="slug",
            field=models.SlugField(unique=True, validators=[portal.models.validate_lowercase_slug]),
        ),
        migrations.AddConstraint(
            model_name="gateway",
            constraint=models.UniqueConstraint(
                Lower("slug"),
                name="gateway_slug_lowercase_unique",
                violation_error_message="A gateway with this slug in another case already exists.",
            ),
        ),
    ]
