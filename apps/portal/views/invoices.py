"""Invoices: the customer's issued invoices and credit notes, each as a page and a PDF.

A draft is its provider's working copy and never shown here; someone else's invoice, or a
draft, is a 404 like any object the customer may not see.
"""

from django.core.paginator import Paginator
from django.shortcuts import render
from django.urls import path
from django.views.decorators.cache import never_cache

from apps.invoicing import downloads
from apps.invoicing.models import Invoice
from apps.portal.views.common import context, customer, customer_required
from apps.tenancy.scope import Scope, access

INVOICES_PER_PAGE = 25


def _invoices(scope: Scope):
    return Invoice.objects.visible_to(scope).issued().select_related("corrects")


@never_cache
@customer_required
def invoices(request, scope: Scope):
    """The customer's invoices and credit notes, newest period first."""
    peer = customer(scope)
    page_obj = Paginator(_invoices(scope), INVOICES_PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "portal/invoices.html", context(peer, nav="invoices", page_obj=page_obj))


@never_cache
@customer_required
def invoice(request, scope: Scope, pk: int):
    """One of the customer's invoices as its HTML document."""
    return downloads.html_response(access(_invoices(scope), scope, pk))


@never_cache
@customer_required
def invoice_pdf(request, scope: Scope, pk: int):
    """One of the customer's invoices as a PDF download."""
    return downloads.pdf_response(access(_invoices(scope), scope, pk))


urlpatterns = [
    path("invoices/", invoices, name="invoices"),
    path("invoices/<int:pk>/", invoice, name="invoice"),
    path("invoices/<int:pk>/pdf/", invoice_pdf, name="invoice-pdf"),
]
