"""Invoices: read within the key's scope, changed only through apps.invoicing's services.

A customer's key reads its own issued invoices and credit notes (never a draft) and their
documents; the operator and resellers also draft, issue, credit, record payments and send.
"""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.core.api import ScopedViewSetMixin
from apps.invoicing import downloads
from apps.invoicing.api import filters, serializers
from apps.invoicing.models import Invoice
from apps.invoicing.services import invoices as services
from apps.tenancy.api.permissions import HasScope, ReadOnlyForCustomers

WRITE = [HasScope, ReadOnlyForCustomers]
DOCUMENTS = ("pdf", "html")


class InvoiceViewSet(
    ScopedViewSetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Invoices and credit notes, newest period first; lines in the detail."""

    queryset = Invoice.objects.select_related("account", "issuer")
    serializer_class = serializers.InvoiceSerializer
    filterset_class = filters.InvoiceFilter
    permission_classes = WRITE
    ordering_fields = ("period_start", "issued_at", "number", "total", "amount_due")

    def get_queryset(self):
        invoices = super().get_queryset()
        if self.scope.is_customer:
            invoices = invoices.issued()
        if self.action != "list":
            invoices = invoices.prefetch_related("lines")
        return invoices

    def get_serializer_class(self):
        return serializers.InvoiceSerializer if self.action == "list" else serializers.InvoiceDetailSerializer

    def perform_content_negotiation(self, request, force=False):
        # A document's client may ask for application/pdf, which no renderer offers: rather
        # than a 406, the view answers the document itself, and a refusal (404) as JSON.
        return super().perform_content_negotiation(request, force=force or self.action in DOCUMENTS)

    def _body(self, serializer_class):
        body = serializer_class(data=self.request.data, context=self.get_serializer_context())
        body.is_valid(raise_exception=True)
        return body.validated_data

    def _answer(self, invoice: Invoice, code: int = status.HTTP_200_OK) -> Response:
        fresh = self.get_queryset().get(pk=invoice.pk)
        return Response(
            serializers.InvoiceDetailSerializer(fresh, context=self.get_serializer_context()).data, code
        )

    @extend_schema(
        summary="Draft an invoice",
        description="A draft of the account's invoice for the days period_start..period_end on the "
        "customer's clock: calculated from the ledger, not numbered yet. The period must have ended "
        "and must not overlap another invoice's; asking again for the same period answers the "
        "invoice there is.",
        request=serializers.DraftSerializer,
        responses={201: serializers.InvoiceDetailSerializer},
    )
    def create(self, request):
        data = self._body(serializers.DraftSerializer)
        invoice = services.create_invoice(
            data["account"],
            actor=self.scope,
            period_start=data["period_start"],
            period_end=data["period_end"],
        )
        return self._answer(invoice, status.HTTP_201_CREATED)

    @extend_schema(
        summary="Issue a draft",
        description="Calculate the draft again from the ledger, number it and fix it for good; tax on "
        "top of the prices is posted to the account. Issuing an issued invoice answers it as it is.",
        request=None,
        responses=serializers.InvoiceDetailSerializer,
    )
    @action(detail=True, methods=["post"], permission_classes=WRITE)
    def issue(self, request, pk=None):
        return self._answer(services.issue(self.get_object(), actor=self.scope))

    @extend_schema(
        summary="Issue a credit note",
        description="A credit note of `amount` (tax included) against this issued invoice, credited to "
        "the account; together an invoice's credit notes never exceed its total. Answers the credit note.",
        request=serializers.CreditSerializer,
        responses={201: serializers.InvoiceDetailSerializer},
    )
    @action(detail=True, methods=["post"], permission_classes=WRITE)
    def credit(self, request, pk=None):
        invoice = self.get_object()
        data = self._body(serializers.CreditSerializer)
        note = services.credit(invoice, actor=self.scope, amount=data["amount"], reason=data["reason"])
        return self._answer(note, status.HTTP_201_CREATED)

    @extend_schema(
        summary="Record a payment",
        description="Post a payment of the invoice (by default its amount due, referring to its number) "
        "and mark it paid. The same reference again posts nothing.",
        request=serializers.PaySerializer,
        responses=serializers.InvoiceDetailSerializer,
    )
    @action(detail=True, methods=["post"], permission_classes=WRITE)
    def pay(self, request, pk=None):
        invoice = self.get_object()
        data = self._body(serializers.PaySerializer)
        invoice, _entry = services.record_payment(
            invoice, actor=self.scope, amount=data.get("amount"), reference=data.get("reference")
        )
        return self._answer(invoice)

    @extend_schema(
        summary="Send by e-mail",
        description="E-mail the issued invoice with its PDF attached and mark it sent.",
        request=serializers.SendSerializer,
        responses=serializers.InvoiceDetailSerializer,
    )
    @action(detail=True, methods=["post"], permission_classes=WRITE)
    def send(self, request, pk=None):
        invoice = self.get_object()
        data = self._body(serializers.SendSerializer)
        return self._answer(services.send(invoice, actor=self.scope, to=data.get("to") or None))

    @extend_schema(
        summary="The invoice as PDF",
        description="An attachment named after the invoice's number (`draft-<id>` before issue).",
        responses={(200, "application/pdf"): OpenApiResponse(OpenApiTypes.BINARY, description="The PDF.")},
    )
    @action(detail=True, methods=["get"])
    def pdf(self, request, pk=None):
        return downloads.pdf_response(self.get_object())

    @extend_schema(
        summary="The invoice as an HTML page",
        description="The same document as a self-contained HTML page, shown inline.",
        responses={(200, "text/html"): OpenApiResponse(OpenApiTypes.STR, description="The page.")},
    )
    @action(detail=True, methods=["get"])
    def html(self, request, pk=None):
        return downloads.html_response(self.get_object())
