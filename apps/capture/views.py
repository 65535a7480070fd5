"""A call's capture from its CDR: the pcap to download and the SIP ladder, admin and portal.

Who sees what: the operator every leg of the call; reseller staff and the customer (portal)
only the customer's own leg (apps.capture.ladder.own_leg), since the rest names the
operator's suppliers and internals, which the CDR admin hides from resellers too. The CDR
itself is found through Cdr.objects.visible_to(scope): anyone else's call is a 404.

The pcap is read on this node: a capture registered by another node but not copied here yet
is a 409 that says so (the file sync brings it within seconds to minutes).
"""

import io
from pathlib import Path

from django.contrib import admin
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.utils.http import content_disposition_header
from django.views.decorators.cache import never_cache

from apps.capture import ladder, pcap
from apps.capture.ladder import own_leg
from apps.cdr.models import Cdr
from apps.files import services as files
from apps.files.models import StoredFile
from apps.files.serving import serve_file
from apps.nodes.models import Node
from apps.portal.views.common import context as _context
from apps.portal.views.common import customer as _customer
from apps.portal.views.common import customer_required
from apps.tenancy.scope import Scope, access, request_scope

PCAP_TYPE = "application/vnd.tcpdump.pcap"


class NotHere(Exception):
    """The call's capture exists but is not on this node yet."""

    def __init__(self, origins: list[str]) -> None:
        super().__init__(", ".join(origins))
        self.origins = origins


def capture_files(cdr: Cdr) -> list[StoredFile]:
    """The live capture files of `cdr`'s call, oldest first (a call silent past the idle
    bound is two files). By the call's Call-ID, node and time (apps.files.services.files_of_cdr):
    a caller reusing another call's Call-ID does not see that call's capture."""
    stored = files.files_of_cdr(cdr).filter(kind=StoredFile.Kind.CAPTURE)
    return list(stored.select_related("origin").order_by("created_at", "pk"))


def local_paths(stored: list[StoredFile]) -> list[Path]:
    """Where each file is on this node; NotHere naming the origins of those still missing."""
    root = files.kind_root(StoredFile.Kind.CAPTURE)
    paths = [root / item.relative_path for item in stored]
    pairs = zip(stored, paths, strict=True)
    missing = sorted({item.origin.name for item, path in pairs if not path.is_file()})
    if missing:
        raise NotHere(missing)
    return paths


def read_messages(paths: list[Path]) -> list[pcap.Message]:
    messages = []
    for path in paths:
        with path.open("rb") as source:
            messages.extend(pcap.read(source))
    return sorted(messages, key=lambda m: m.timestamp_us)


def visible_messages(scope: Scope, cdr: Cdr, paths: list[Path]) -> list[pcap.Message]:
    """Every message for the operator; the customer's own leg for anyone else."""
    messages = read_messages(paths)
    if scope.is_operator:
        return messages
    return own_leg(messages, cdr.call_id, cdr.source_ip)


def host_names(cdr: Cdr) -> dict[str, str]:
    """Names for the ladder's columns: each node's OpenSIPS and FreeSWITCH, the customer."""
    names = {}
    for node in Node.objects.all():
        names[ladder.endpoint(node.sip_address, node.sip_port)] = f"{node.name} OpenSIPS"
        media_port = getattr(node, "media_port", None)
        if media_port and getattr(node, "media_enabled", True):
            names[ladder.endpoint(node.sip_address, media_port)] = f"{node.name} FreeSWITCH"
    if cdr.source_ip:
        names.setdefault(cdr.source_ip, "customer")
    return names


def _scoped_cdr(scope: Scope, pk) -> Cdr:
    return access(Cdr.objects.all(), scope, pk)


def _ladder_response(request, scope: Scope, cdr: Cdr, template: str, context: dict) -> HttpResponse:
    stored = capture_files(cdr)
    if not stored:
        context["error"] = "No capture was made of this call."
        return render(request, template, context, status=404)
    try:
        paths = local_paths(stored)
    except NotHere as missing:
        context["error"] = f"{_not_here(scope, missing)} Try again in a minute."
        return render(request, template, context, status=409)
    messages = visible_messages(scope, cdr, paths)
    context["ladder"] = ladder.build(messages, host_names(cdr))
    context["ladder_markers"] = ladder.MARKERS
    return render(request, template, context)


def _pcap_response(request, scope: Scope, cdr: Cdr) -> HttpResponse:
    stored = capture_files(cdr)
    if not stored:
        raise Http404("No capture was made of this call.")
    try:
        paths = local_paths(stored)
    except NotHere as missing:
        return HttpResponse(
            _not_here(scope, missing),
            status=409,
            content_type="text/plain; charset=utf-8",
        )
    filename = f"call-{cdr.pk}.pcap"
    if scope.is_operator and len(paths) == 1:
        return serve_file(request, paths[0], content_type=PCAP_TYPE, filename=filename, download=True)
    # A filtered or joined capture is made here; it is a few kB.
    out = io.BytesIO()
    pcap.write(out, visible_messages(scope, cdr, paths))
    response = HttpResponse(out.getvalue(), content_type=PCAP_TYPE)
    response["Content-Disposition"] = content_disposition_header(True, filename)
    response["Cache-Control"] = "private, max-age=0"
    return response


def _not_here(scope: Scope, missing: NotHere) -> str:
    """Why the capture cannot be read here; node names are for staff, not customers."""
    if scope.is_customer:
        return "The capture of this call is still being copied to this server."
    return f"The capture of this call is still being copied to this node from {', '.join(missing.origins)}."


def _staff_scope(request) -> Scope:
    scope = request_scope(request)
    if not (scope.is_operator or scope.is_reseller):
        raise Http404
    return scope


@never_cache
def admin_ladder(request, pk):
    scope = _staff_scope(request)
    cdr = _scoped_cdr(scope, pk)
    context = {
        **admin.site.each_context(request),
        "title": f"SIP ladder of call {cdr.pk}",
        "cdr": cdr,
        "all_legs": scope.is_operator,
    }
    return _ladder_response(request, scope, cdr, "admin/capture/ladder.html", context)


@never_cache
def admin_pcap(request, pk):
    scope = _staff_scope(request)
    return _pcap_response(request, scope, _scoped_cdr(scope, pk))


@never_cache
@customer_required
def portal_ladder(request, scope: Scope, pk):
    cdr = _scoped_cdr(scope, pk)
    context = _context(_customer(scope), nav="cdrs", cdr=cdr)
    return _ladder_response(request, scope, cdr, "portal/capture_ladder.html", context)


@never_cache
@customer_required
def portal_pcap(request, scope: Scope, pk):
    return _pcap_response(request, scope, _scoped_cdr(scope, pk))
