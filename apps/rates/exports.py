"""A price list's prices in force, read for a download: the admin's rate table export and
the portal's Prices page both write these rows through apps.core.exports.

The columns are the import's canonical ones (apps.rates.importing.parsing.CANONICAL), so a
downloaded file can be edited and imported back.
"""

from collections.abc import Iterator

from django.db.models import Q

from apps.core.exports import CHUNK
from apps.rates.importing.parsing import CANONICAL
from apps.rates.lookup import COLUMNS  # a rate's fields in CANONICAL's order
from apps.rates.models import Rate

HEADER = CANONICAL


def prices_in_force(table, moment, *, scope=None):
    """The live rows of `table` in force at `moment` (narrowed to `scope`'s when given)."""
    rates = Rate.objects.all() if scope is None else Rate.objects.visible_to(scope)
    return rates.live().filter(table=table).effective_at(moment)


def price_chunks(rates, *, size: int = CHUNK) -> Iterator[list[tuple]]:
    """Rows of COLUMNS from `rates` by prefix, then period and start, in lists of `size`.

    apps.core.exports.keyset_chunks reads newest first; a price list reads by prefix, so this
    is the same keyset walk the other way: each chunk a short read of the (table, prefix)
    index after the last row of the one before, never an OFFSET.
    """
    rows = rates.order_by("prefix", "pk").values_list("pk", *COLUMNS)
    after = None
    while True:
        page = rows
        if after is not None:
            prefix, pk = after
            page = rows.filter(Q(prefix__gt=prefix) | Q(prefix=prefix, pk__gt=pk))
        batch = list(page[:size])
        if not batch:
            return
        yield [row[1:] for row in batch]
        after = (batch[-1][1], batch[-1][0])
