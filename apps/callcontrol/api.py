"""The call-control operations as DRF views: the schema's documentation, WSGI and tests.

Under ASGI, smartswitch.asgi sends /call-control/ to apps.callcontrol.endpoint before
Django sees it; these views run the same `handle`, so both answer identically.
"""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.callcontrol.endpoint import handle


class NodeSecretAuthentication(BaseAuthentication):
    """Documents the node's shared secret; `handle` checks it against the node named in the body."""

    def authenticate(self, request):
        return None


class NodeSecretScheme(OpenApiAuthenticationExtension):
    target_class = "apps.callcontrol.api.NodeSecretAuthentication"
    name = "NodeSecret"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "The call-control secret of the node named in the body.",
        }


class AuthorizeRequest(serializers.Serializer):
    call_id = serializers.CharField(max_length=255)
    node = serializers.CharField(max_length=31, help_text="Name of the asking node.")
    source_ip = serializers.IPAddressField(required=False, allow_null=True)
    source_port = serializers.IntegerField(required=False, allow_null=True)
    transport = serializers.CharField(required=False, allow_null=True, help_text="udp, tcp, tls or ws.")
    peer_id = serializers.IntegerField(
        required=False, allow_null=True, help_text="From the address table's context_info."
    )
    auth_user = serializers.CharField(
        required=False, allow_null=True, help_text="Digest-authenticated user, user or user@domain."
    )
    caller = serializers.CharField(required=False, allow_blank=True, max_length=64)
    callee = serializers.CharField(
        max_length=64, help_text="Digits (after an optional +), or the user name of one of our SIP accounts."
    )
    callee_domain = serializers.CharField(
        required=False,
        allow_null=True,
        max_length=253,
        help_text="The request URI's host: with a user name, names the SIP account (user@domain); "
        "ignored when it is one of our nodes' addresses.",
    )


class RouteTarget(serializers.Serializer):
    route_id = serializers.IntegerField(allow_null=True, help_text="None for a DID's or on-net target.")
    supplier_id = serializers.IntegerField(
        allow_null=True, help_text="Who charges us for the call (a DID's supplier); None on-net."
    )
    gateway_id = serializers.IntegerField(allow_null=True)
    uri = serializers.CharField(help_text="SIP URI of the gateway; empty for a SIP account (`aor`).")
    caller = serializers.CharField(help_text="Caller to send, after the supplier's egress rewriting.")
    callee = serializers.CharField(
        help_text="Callee to send: egress rewriting, strip digits, gateway prefix."
    )
    setup_timeout = serializers.IntegerField(
        allow_null=True, help_text="Seconds before trying the next route."
    )
    max_calls = serializers.IntegerField(allow_null=True, help_text="Concurrent calls this route allows.")
    stop_hunting = serializers.BooleanField(help_text="Do not try further routes if this one fails.")
    aor = serializers.CharField(
        allow_null=True,
        help_text="A SIP account of ours, user@domain: look it up in the location table and "
        "relay to where it is registered.",
    )
    ring = serializers.ListField(
        child=serializers.CharField(),
        allow_null=True,
        help_text="A DID's ring group: SIP accounts (user@domain) rung at once, each where it is registered.",
    )


class Limits(serializers.Serializer):
    max_calls = serializers.IntegerField(allow_null=True)
    cps = serializers.IntegerField(allow_null=True, help_text="The peer's calls per second, cluster-wide.")
    cps_node = serializers.IntegerField(
        allow_null=True,
        help_text="This node's share of `cps`: the calls per second it admits for the peer "
        "(OpenSIPS's ratelimit pipe). None: no limit.",
    )


class AuthorizeResponse(serializers.Serializer):
    action = serializers.ChoiceField(choices=["route", "reject", "redirect"])
    code = serializers.IntegerField(
        help_text="SIP code to answer with when rejecting: 403 forbidden or blocked, 404 no rate, "
        "402 no money, 486 over the concurrent-call limit, 503 no route, 404 unknown number or "
        "account, 480 an account or DID that cannot take calls now; 302 with a redirect."
    )
    reason = serializers.CharField()
    call_id = serializers.CharField()
    peer_id = serializers.IntegerField(allow_null=True)
    max_duration = serializers.IntegerField(help_text="Seconds; end the call (BYE) after this.")
    reservation = serializers.IntegerField(
        allow_null=True, help_text="Give it back to /release and in the CDR."
    )
    caller = serializers.CharField(help_text="After ingress rewriting.")
    callee = serializers.CharField(help_text="After tech prefix removal and ingress rewriting.")
    destination = serializers.CharField()
    kind = serializers.ChoiceField(
        choices=["off-net", "on-net", "did"],
        help_text="off-net: to suppliers; on-net: to an account or DID of ours; did: a supplier's "
        "call to one of our DIDs (peer_id is the DID's customer).",
    )
    routes = RouteTarget(many=True, help_text="Attempts in order.")
    redirect = serializers.CharField(allow_null=True, help_text="Contact for a 302.")
    record = serializers.BooleanField()
    limits = Limits()


class ReleaseRequest(serializers.Serializer):
    node = serializers.CharField(max_length=31)
    call_id = serializers.CharField(max_length=255)
    reservation = serializers.IntegerField(required=False, allow_null=True)


class AnsweredRequest(ReleaseRequest):
    """The same fields as a release: the node, the Call-ID and the reservation if known."""


ERRORS = {
    400: OpenApiResponse(description="Malformed body: `errors` names the field."),
    401: OpenApiResponse(description="Unknown node or wrong secret."),
    503: OpenApiResponse(description="Call control cannot reach its database: reject the call with 503."),
}


class CallControlView(APIView):
    authentication_classes = [NodeSecretAuthentication]
    permission_classes = [AllowAny]
    operation = ""

    def post(self, request):
        status, payload = handle(self.operation, request.body, request.headers.get("Authorization"))
        return Response(payload, status=status)


class AuthorizeView(CallControlView):
    operation = "authorize"

    @extend_schema(
        tags=["call control"],
        summary="Decide one call",
        description="Asked by OpenSIPS for every INVITE: identify the customer, check it, price it, "
        "order the supplier routes and reserve the money of the longest affordable call.",
        request=AuthorizeRequest,
        responses={200: AuthorizeResponse, **ERRORS},
    )
    def post(self, request):
        return super().post(request)


class ReleaseView(CallControlView):
    operation = "release"

    @extend_schema(
        tags=["call control"],
        summary="Release a failed call's money",
        description="Sent by OpenSIPS when a call fails before answer. Idempotent.",
        request=ReleaseRequest,
        responses={200: inline_serializer("Released", {"released": serializers.IntegerField()}), **ERRORS},
    )
    def post(self, request):
        return super().post(request)


class AnsweredView(CallControlView):
    operation = "answered"

    @extend_schema(
        tags=["call control"],
        summary="Tell that a call was answered",
        description="Sent by OpenSIPS on the 200 OK to the INVITE: the reservation is held until "
        "answer + maximum duration instead of its answer deadline. Idempotent.",
        request=AnsweredRequest,
        responses={200: inline_serializer("Answered", {"answered": serializers.IntegerField()}), **ERRORS},
    )
    def post(self, request):
        return super().post(request)
