"""The write paths of price lists: every module here changes prices or what they are read from.

tables       price lists, their single rates, import templates
imports      price imports up to the preview: receive, read, stage, compare, cancel
activation   make a previewed import live: claim, write the next version, switch; confirm
pipeline     the SQL of staging and comparing, in bounded transactions
versions     the SQL that writes a table's next version beside the live one, and the switch
selling      sell price generation, written through the import pipeline
time_profiles  the hours of the week (weekend, offpeak) prices and routing rules apply in

Pure parts stay outside: apps/rates/importing (parsing, validation, report), rows,
generation, prefix_index, lookup, tariffs, time_windows. The verbs of `tables` are re-exported here, so
`from apps.rates import services as rate_services; rate_services.add_rates(...)` reads as before.
"""

from apps.rates.services.tables import (
    TABLE_SETTINGS,
    TEMPLATE_SETTINGS,
    add_rates,
    create_import_template,
    create_rate_table,
    update_import_template,
    update_rate_table,
)
from apps.rates.services.time_profiles import (
    create_time_profile,
    delete_time_profile,
    update_time_profile,
)

__all__ = [
    "TABLE_SETTINGS",
    "TEMPLATE_SETTINGS",
    "add_rates",
    "create_import_template",
    "create_rate_table",
    "create_time_profile",
    "delete_time_profile",
    "update_import_template",
    "update_rate_table",
    "update_time_profile",
]
