"""Call detail records, read only; resellers and customers never see the supplier leg."""

from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema, extend_schema_view

from apps.cdr.api import filters, serializers
from apps.cdr.models import Cdr
from apps.core.api import ScopedReadOnlyViewSet

_EITHER = "Operator keys get OperatorCdr; reseller and customer keys get Cdr (no supplier leg)."


def _cdr_schema(*, many: bool):
    return PolymorphicProxySerializer(
        component_name="CdrForScope",
        serializers=[serializers.OperatorCdrSerializer, serializers.CdrSerializer],
        resource_type_field_name=None,
        many=many,
    )


@extend_schema_view(
    list=extend_schema(responses=_cdr_schema(many=True), description=_EITHER),
    retrieve=extend_schema(responses=_cdr_schema(many=False), description=_EITHER),
)
class CdrViewSet(ScopedReadOnlyViewSet):
    """One row per call attempt, with its rating; filter by time, peer and SIP code."""

    queryset = Cdr.objects.all()
    filterset_class = filters.CdrFilter
    ordering_fields = ("created_at",)

    def get_serializer_class(self):
        if self.scope.is_operator:
            return serializers.OperatorCdrSerializer
        return serializers.CdrSerializer
