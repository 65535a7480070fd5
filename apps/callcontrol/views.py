"""The admin's check-routing page (operator only): the same decision as the command."""

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.shortcuts import render

from apps.callcontrol.checking import CheckInput, candidate_rows, check_routing, report_lines
from apps.core.errors import DomainError
from apps.nodes.models import Node
from apps.peers.models import Peer
from apps.tenancy.scope import request_scope


class CheckRoutingForm(forms.Form):
    peer = forms.ModelChoiceField(
        queryset=Peer.objects.customers().order_by("name"),
        required=False,
        help_text="Or leave empty and give the source IP or the SIP user.",
    )
    source_ip = forms.GenericIPAddressField(required=False, label="Source IP")
    auth_user = forms.CharField(required=False, label="SIP user", help_text="user or user@domain")
    callee = forms.RegexField(regex=r"^\+?[0-9]{1,64}$", help_text="As the customer dials it.")
    caller = forms.CharField(required=False, max_length=64)
    node = forms.ModelChoiceField(queryset=Node.objects.order_by("name"), required=False)
    at = forms.DateTimeField(
        required=False, label="At", help_text="Empty: now. Prices in force at that time."
    )
    call_id = forms.CharField(
        required=False, initial="check-routing", label="Call-ID", help_text="Seeds the percentage split."
    )


def check_routing_view(request):
    if not request_scope(request).is_operator:
        raise PermissionDenied
    form = CheckRoutingForm(request.GET or None)
    decision = None
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        try:
            decision = check_routing(
                CheckInput(
                    callee=data["callee"],
                    caller=data["caller"],
                    peer=data["peer"],
                    source_ip=data["source_ip"] or None,
                    auth_user=data["auth_user"] or None,
                    node=data["node"],
                    at=data["at"],
                    call_id=data["call_id"] or "check-routing",
                )
            )
        except DomainError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, str(exc))
    context = {
        **admin.site.each_context(request),
        "title": "Check routing",
        "form": form,
        "decision": decision,
        "candidates": candidate_rows(decision) if decision else [],
        "report": "\n".join(report_lines(decision)) if decision else "",
    }
    return render(request, "admin/callcontrol/check_routing.html", context)
