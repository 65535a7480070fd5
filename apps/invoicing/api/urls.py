from apps.invoicing.api import views

# (prefix, viewset, basename), registered into the one router in smartswitch/api_urls.py.
routes = [
    ("invoices", views.InvoiceViewSet, "invoice"),
]
