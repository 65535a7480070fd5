# Written by hand: money columns on SQLite become integer micro-units (apps.core.sqlite_money).

from django.db import migrations

from apps.core.sqlite_money import MoneyToMicroUnits


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0007_rerate_run_verbose_name"),
    ]

    operations = [
        MoneyToMicroUnits("billing"),
    ]
