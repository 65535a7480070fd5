"""The `version` rows OpenSIPS 3.6 modules check at startup (the create scripts' INSERTs)."""

from django.db import migrations

# Frozen here: a later schema change of a table adds a migration that updates its row.
TABLE_VERSIONS = {
    "address": 5,
    "subscriber": 8,
    "dr_gateways": 6,
    "dr_rules": 4,
    "dr_carriers": 3,
    "dr_groups": 2,
    "registrant": 3,
    "location": 1013,
    "acc": 7,
    "missed_calls": 5,
}


def add_versions(apps, schema_editor):
    Version = apps.get_model("opensips", "Version")
    for table, version in TABLE_VERSIONS.items():
        Version.objects.update_or_create(table_name=table, defaults={"table_version": version})


def remove_versions(apps, schema_editor):
    apps.get_model("opensips", "Version").objects.filter(table_name__in=TABLE_VERSIONS).delete()


class Migration(migrations.Migration):
    dependencies = [("opensips", "0001_initial")]

    operations = [migrations.RunPython(add_versions, remove_versions)]
