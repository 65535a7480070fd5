"""SQLite databases made before money was stored exactly: their columns become micro-units.

Until MoneyField stored integer micro-units on SQLite (see its docstring), a money column
there was declared `decimal` (NUMERIC affinity) and held REALs, or INTEGERs for whole
amounts. Each app that has money columns runs `MoneyToMicroUnits` once, in its own
migration chain so that any later migration of that app (which may rebuild a table from
the current field types) runs after it:

- a column still declared `decimal` gets its values multiplied by 10^6 and rounded, and its
  table is rebuilt with the columns declared `integer`;
- a column already declared `integer` (a database created with the new field, which is
  every test database) is left alone, so the operation is safe to run on any database;
- MariaDB and PostgreSQL keep DECIMAL(20, 6): nothing happens there.

Values past what int64 micro-units hold (|x| > 9.2 * 10^12; only the old bug wrote them)
stay REALs, scaled: MoneyField reads them back, and the accounts that hold them show them
as out of range instead of failing.
"""

# ruff: noqa: S608 - table and column names come from the models.

from django.db import migrations, models

from apps.core.models import MoneyField

# Largest whole amount whose micro-units fit int64, and the same as a REAL bound.
_INT64_UNITS = (2**63 - 1) // 10**6
_SCALE = 10**6


def _money_fields(model) -> list:
    return [field for field in model._meta.local_concrete_fields if isinstance(field, MoneyField)]


def _declared(schema_editor, table: str) -> dict[str, str]:
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(f"PRAGMA table_info({schema_editor.quote_name(table)})")
        return {name: (kind or "").lower() for _cid, name, kind, *_rest in cursor.fetchall()}


def _as_decimal_field(field) -> models.DecimalField:
    """The plain DecimalField `field` was before: same column, options and model."""
    name, _path, args, kwargs = field.deconstruct()
    old = models.DecimalField(*args, **kwargs)
    old.set_attributes_from_name(name)
    old.model = field.model
    return old


class MoneyToMicroUnits(migrations.RunPython):
    """Convert the SQLite money columns of one app's models to integer micro-units, once."""

    def __init__(self, app_label: str) -> None:
        self.label = app_label
        super().__init__(self.forward, self.backward, elidable=False)

    def deconstruct(self):
        return self.__class__.__name__, [self.label], {}

    def describe(self):
        return f"Store {self.label}'s money columns as integer micro-units on SQLite"

    def _tables(self, apps, schema_editor, *, declared_as: str):
        if schema_editor.connection.vendor != "sqlite":
            return
        for model in apps.get_app_config(self.label).get_models():
            if model._meta.proxy or not model._meta.managed:
                continue
            fields = _money_fields(model)
            if not fields:
                continue
            declared = _declared(schema_editor, model._meta.db_table)
            pending = [f for f in fields if f.column in declared and declared[f.column] == declared_as]
            if pending:
                yield model, pending

    def forward(self, apps, schema_editor):
        quote = schema_editor.quote_name
        for model, fields in self._tables(apps, schema_editor, declared_as="decimal"):
            table = quote(model._meta.db_table)
            for field in fields:
                column = quote(field.column)
                # Whole amounts stored as INTEGER scale exactly; REALs were never more exact
                # than the nearest micro-unit of their double; past int64 a REAL stays REAL.
                schema_editor.execute(
                    f"UPDATE {table} SET {column} = CASE"
                    f" WHEN typeof({column}) = 'integer' AND abs({column}) <= {_INT64_UNITS}"
                    f"  THEN {column} * {_SCALE}"
                    f" WHEN abs({column}) <= {_INT64_UNITS}"
                    f"  THEN CAST(round({column} * {_SCALE}) AS INTEGER)"
                    f" ELSE {column} * {_SCALE}.0 END"
                    f" WHERE {column} IS NOT NULL"
                )
            # One rebuild declares every money column of the table `integer` (the model's
            # current type); the copied values keep their storage class.
            schema_editor._remake_table(model, alter_fields=[(_as_decimal_field(f), f) for f in fields])

    def backward(self, apps, schema_editor):
        quote = schema_editor.quote_name
        for model, fields in self._tables(apps, schema_editor, declared_as="integer"):
            table = quote(model._meta.db_table)
            for field in fields:
                column = quote(field.column)
                schema_editor.execute(
                    f"UPDATE {table} SET {column} = {column} / {_SCALE}.0 WHERE {column} IS NOT NULL"
                )
            schema_editor._remake_table(
                model, alter_fields=[(f, _as_decimal_field(f)) for f in _money_fields(model)]
            )
