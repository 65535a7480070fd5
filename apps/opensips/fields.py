"""Column types as OpenSIPS's MySQL create scripts spell them.

Django's own MySQL types differ in ways OpenSIPS does not care about but a schema check
does (VARCHAR for CHAR, signed ids, DATETIME(6), LONGTEXT): these fields give MariaDB the
script's exact types and leave SQLite and PostgreSQL on Django's defaults (PostgreSQL's
CHAR pads with blanks, which OpenSIPS would then compare).
"""

from django.db import models


def _mysql(connection) -> bool:
    return connection.vendor == "mysql"


class FixedCharField(models.CharField):
    """CHAR(n) on MariaDB, VARCHAR(n) elsewhere."""

    def db_type(self, connection):
        if _mysql(connection):
            return f"char({self.max_length})"
        return super().db_type(connection)


class UnsignedAutoField(models.AutoField):
    """INT UNSIGNED AUTO_INCREMENT on MariaDB."""

    def db_type(self, connection):
        if _mysql(connection):
            return "integer UNSIGNED AUTO_INCREMENT"
        return super().db_type(connection)

    def rel_db_type(self, connection):
        if _mysql(connection):
            return "integer UNSIGNED"
        return super().rel_db_type(connection)


class UnsignedBigAutoField(models.BigAutoField):
    """BIGINT UNSIGNED AUTO_INCREMENT on MariaDB."""

    def db_type(self, connection):
        if _mysql(connection):
            return "bigint UNSIGNED AUTO_INCREMENT"
        return super().db_type(connection)

    def rel_db_type(self, connection):
        if _mysql(connection):
            return "bigint UNSIGNED"
        return super().rel_db_type(connection)


class PlainDateTimeField(models.DateTimeField):
    """DATETIME (whole seconds, as OpenSIPS writes it) on MariaDB."""

    def db_type(self, connection):
        if _mysql(connection):
            return "datetime"
        return super().db_type(connection)


class PlainTextField(models.TextField):
    """TEXT on MariaDB (Django uses LONGTEXT)."""

    def db_type(self, connection):
        if _mysql(connection):
            return "text"
        return super().db_type(connection)


class ScaledFloatField(models.FloatField):
    """FLOAT(10,2) on MariaDB (usrloc's q value)."""

    def db_type(self, connection):
        if _mysql(connection):
            return "float(10,2)"
        return super().db_type(connection)


class PlainBlobField(models.BinaryField):
    """BLOB on MySQL, as OpenSIPS's scripts create it (Django would use LONGBLOB)."""

    def db_type(self, connection):
        if _mysql(connection):
            return "blob"
        return super().db_type(connection)
