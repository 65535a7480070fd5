from apps.billing.api import views

routes = [
    ("accounts", views.AccountViewSet, "account"),
    ("ledger-entries", views.LedgerEntryViewSet, "ledgerentry"),
]
