"""Accounts and their ledger; money moves only through apps.billing.services.

Payments, refunds and adjustments are posted with the client's own reference, which
makes them safe to retry: the same reference and amount again returns the first entry.
"""

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.billing import services
from apps.billing.api import filters, serializers
from apps.billing.models import Account, LedgerEntry
from apps.core.api import RefusalSerializer, ScopedReadOnlyViewSet, ValidationErrorsSerializer
from apps.tenancy.api.permissions import HasScope, ReadOnlyForCustomers


def _posting_schema(request, *, summary: str, description: str, example: dict):
    return extend_schema(
        summary=summary,
        description=description,
        request=request,
        responses={
            201: OpenApiResponse(serializers.LedgerEntrySerializer, description="Posted: the new entry."),
            200: OpenApiResponse(
                serializers.LedgerEntrySerializer,
                description="This reference was posted already with this amount: the first entry, "
                "nothing posted again.",
            ),
            400: OpenApiResponse(
                # Not FieldErrors: a body that is not JSON is {"detail": "JSON parse error - ..."}.
                ValidationErrorsSerializer,
                description="Malformed body or a refused amount; the messages name the field.",
            ),
            403: OpenApiResponse(
                RefusalSerializer,
                description="Customers' keys read accounts but cannot post to them; only the operator "
                "refunds more than was paid (`allow_over_refund`).",
            ),
            404: OpenApiResponse(
                serializers.DetailSerializer, description="No such account among those the key may see."
            ),
            409: OpenApiResponse(
                serializers.FieldErrorsSerializer,
                description="This reference was posted already with another amount (`reference`).",
            ),
        },
        examples=[OpenApiExample("Request", value=example, request_only=True)],
    )


class AccountViewSet(ScopedReadOnlyViewSet):
    """The one account of each peer, with its balance (the cached sum of its ledger)."""

    queryset = Account.objects.select_related("peer")  # its clock: spent today and this month
    serializer_class = serializers.AccountSerializer
    filterset_class = filters.AccountFilter
    ordering_fields = ("balance", "created_at")

    def _post(self, request, body_class, service):
        account = self.get_object()
        body = body_class(data=request.data)
        body.is_valid(raise_exception=True)
        entry, created = service(account, actor=self.scope, **body.validated_data)
        return Response(
            serializers.LedgerEntrySerializer(entry, context=self.get_serializer_context()).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )

    @_posting_schema(
        serializers.PaymentSerializer,
        summary="Post a payment",
        description="Credit the account with a payment received; the operator and the account's "
        "reseller may post.",
        example={"amount": "12.50", "reference": "bank-2026-000123", "description": "Wire transfer"},
    )
    @action(detail=True, methods=["post"], permission_classes=[HasScope, ReadOnlyForCustomers])
    def payments(self, request, pk=None):
        return self._post(request, serializers.PaymentSerializer, services.post_payment)

    @_posting_schema(
        serializers.RefundSerializer,
        summary="Post a refund",
        description="Debit the account with money paid back to the customer; the entry's amount "
        "is the negative of `amount`. At most what was paid and not refunded yet, unless the "
        "operator sets `allow_over_refund`.",
        example={"amount": "5.00", "reference": "refund-77", "description": "Unused credit"},
    )
    @action(detail=True, methods=["post"], permission_classes=[HasScope, ReadOnlyForCustomers])
    def refunds(self, request, pk=None):
        return self._post(request, serializers.RefundSerializer, services.post_refund)

    @_posting_schema(
        serializers.AdjustmentSerializer,
        summary="Post an adjustment",
        description="Correct the balance: a positive amount credits, a negative one debits; the "
        "reason is the entry's description. Within +-1000000000, except the operator's adjustment "
        "that brings a balance already out of range back into it.",
        example={"amount": "-1.20", "reason": "Calls billed twice on 3 May", "reference": "adj-3-may"},
    )
    @action(detail=True, methods=["post"], permission_classes=[HasScope, ReadOnlyForCustomers])
    def adjustments(self, request, pk=None):
        # The operator's may be larger: the one that brings a balance out of range back.
        body = (
            serializers.OperatorAdjustmentSerializer
            if self.scope.is_operator
            else serializers.AdjustmentSerializer
        )
        return self._post(request, body, services.post_adjustment)


class LedgerEntryViewSet(ScopedReadOnlyViewSet):
    """Immutable movements of money: payments, call charges, refunds, fees, adjustments."""

    queryset = LedgerEntry.objects.all()
    serializer_class = serializers.LedgerEntrySerializer
    filterset_class = filters.LedgerEntryFilter
    ordering_fields = ("created_at", "occurred_at", "amount")
