"""Invoicing in the admin: invoices are read here and changed only by the invoicing services.

issuers    issuer profiles: what the operator's and each reseller's documents say
invoices   invoices and credit notes, their lines, documents, and the tools that call services
"""

from apps.invoicing.admin import invoices, issuers  # noqa: F401 - each registers its pages
