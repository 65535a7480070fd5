"""Routing plans, their rules and routes, and supplier quality: the operator's pages only.

A plan's page lists its rules; a rule's page lists its routes. Routes also have a list of
their own, to answer "which rules send calls to this supplier?". Every write goes through
apps.routing.services.
"""

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.db.models import Count, Exists, F, FloatField, OuterRef, Prefetch
from django.db.models.functions import Cast, NullIf
from django.http import HttpResponseRedirect
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html
from django.utils.timezone import localtime

from apps.core.admin import (
    NOTHING,
    READ_ONLY,
    ReadOnlyModelAdmin,
    ScopedInline,
    ScopedModelAdmin,
    ScopedRelatedFilter,
    form_changes,
    form_values,
)
from apps.nodes.models import ClusterSettings
from apps.routing import services
from apps.routing.models import Method, QualityStat, Route, RoutingPlan, RoutingRule


def operator_suppliers(peers):
    return peers.suppliers().filter(reseller__isnull=True)


def _routes_with_suppliers():
    return Prefetch("routes", queryset=Route.objects.select_related("supplier", "gateway"))


def route_summary(rule: RoutingRule) -> str:
    """The rule's routes in one line, as the method reads them (needs routes prefetched)."""
    if rule.method == Method.BLOCK:
        return "blocked"
    routes = list(rule.routes.all())
    if not routes:
        return "-"

    def label(route: Route) -> str:
        text = route.supplier.name + (f" via {route.gateway.name}" if route.gateway_id else "")
        if rule.method == Method.WEIGHT:
            text += f" {route.weight}"
        elif rule.method == Method.PRIORITY:
            text += f" #{route.priority}"
        return text if route.enabled else f"({text}, off)"

    return ", ".join(label(route) for route in routes)


# --- rules on a plan's page ---------------------------------------------------------------


class RoutingRuleInline(ScopedInline):
    model = RoutingRule
    fields = (
        "prefix",
        "destination",
        "time_profile",
        "method",
        "quality_metric",
        "quality_tolerance",
        "position",
        "enabled",
        "description",
        "route_list",
    )
    readonly_fields = ("route_list",)
    show_change_link = True
    verbose_name_plural = "rules (open a rule to edit its routes)"

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related(_routes_with_suppliers())

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        if db_field.name == "time_profile" and field is not None:
            # Read once for every rule's select: a queryset would be read again per row.
            field.choices = [("", "---------"), *((p.pk, str(p)) for p in field.queryset)]
        return field

    @admin.display(description="routes")
    def route_list(self, rule):
        return route_summary(rule) if rule.pk else "-"

    def create(self, request, parent, form):
        return services.add_rule(parent, actor=self.scope(request), **form_values(form, exclude=("plan",)))

    def update(self, request, obj, form):
        changes = form_changes(form)
        if changes:
            services.update_rule(obj, actor=self.scope(request), changes=changes)

    def remove(self, request, obj):
        services.remove_rule(obj, actor=self.scope(request))


@admin.register(RoutingPlan)
class RoutingPlanAdmin(ScopedModelAdmin):
    list_display = ("name", "parent", "rule_count", "is_default", "description")
    list_select_related = ("parent",)
    search_fields = ("name", "description")
    inlines = (RoutingRuleInline,)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["name", "parent", "description"]
        return ["name", "parent", "description", "used_by", "check_link"]

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else ("used_by", "check_link")

    def get_queryset(self, request):
        default = ClusterSettings.objects.filter(default_routing_plan=OuterRef("pk"))
        return (
            super()
            .get_queryset(request)
            .annotate(rule_total=Count("rules", distinct=True), default_plan=Exists(default))
        )

    @admin.display(description="rules", ordering="rule_total")
    def rule_count(self, plan):
        return plan.rule_total

    @admin.display(description="cluster default", boolean=True, ordering="default_plan")
    def is_default(self, plan):
        return plan.default_plan

    @admin.display(description="used by")
    def used_by(self, plan):
        users = services.plan_users(plan)
        if not users:
            return "nobody: customers route by their own, their reseller's or the cluster's default plan"
        customers = reverse("admin:peers_peer_changelist") + f"?routing_plan__id__exact={plan.pk}"
        return format_html('{} (<a href="{}">customers with this plan</a>)', "; ".join(users), customers)

    @admin.display(description="check routing")
    def check_link(self, plan):
        try:
            url = reverse("check-routing")
        except NoReverseMatch:
            return "-"
        return format_html('<a href="{}">Check how a number is routed</a>', url)

    def delete_view(self, request, object_id, extra_context=None):
        # Said before the confirmation page, which would only list "peer" as something the
        # operator may not delete.
        plan = self.get_object(request, unquote(object_id))
        if plan is not None and self.has_delete_permission(request, plan):
            users = services.plan_users(plan)
            if users:
                self.message_user(
                    request,
                    f"{plan} cannot be deleted while it is used by {'; '.join(users)}.",
                    messages.ERROR,
                )
                return HttpResponseRedirect(reverse(self._url_name("change"), args=[plan.pk]))
        return super().delete_view(request, object_id, extra_context)

    def create_via_service(self, request, form):
        return services.create_plan(actor=self.scope(request), **form_values(form))

    def update_via_service(self, request, obj, form):
        changes = form_changes(form)
        if changes:
            services.update_plan(obj, actor=self.scope(request), changes=changes)

    def delete_via_service(self, request, obj):
        services.delete_plan(obj, actor=self.scope(request))


# --- routes on a rule's page ----------------------------------------------------------------


ROUTE_FIELDS = (
    "supplier",
    "gateway",
    "priority",
    "weight",
    "max_calls",
    "setup_timeout",
    "stop_hunting",
    "record_calls",
    "capture_calls",
    "codecs",
    "enabled",
)


class RouteInline(ScopedInline):
    model = Route
    fields = ROUTE_FIELDS
    autocomplete_fields = ("supplier", "gateway")
    choice_filters = {"supplier": operator_suppliers}

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("supplier", "gateway__peer")

    def create(self, request, parent, form):
        return services.add_route(
            parent,
            actor=self.scope(request),
            supplier=form.cleaned_data["supplier"],
            **form_values(form, exclude=("rule", "supplier")),
        )

    def update(self, request, obj, form):
        changes = form_changes(form)
        if changes:
            services.update_route(obj, actor=self.scope(request), changes=changes)

    def remove(self, request, obj):
        services.remove_route(obj, actor=self.scope(request))


@admin.register(RoutingRule)
class RoutingRuleAdmin(ScopedModelAdmin):
    list_display = (
        "__str__",
        "plan",
        "prefix",
        "destination",
        "time_profile",
        "method",
        "position",
        "enabled",
        "route_list",
    )
    list_display_links = ("__str__",)
    list_select_related = ("plan", "time_profile")
    list_filter = (("plan", ScopedRelatedFilter), ("time_profile", ScopedRelatedFilter), "method", "enabled")
    search_fields = ("^prefix", "destination", "description", "plan__name")
    fields = (
        "plan",
        "prefix",
        "destination",
        "time_profile",
        "method",
        "quality_metric",
        "quality_tolerance",
        "position",
        "enabled",
        "description",
    )
    inlines = (RouteInline,)

    def get_readonly_fields(self, request, obj=None):
        # A rule stays in its plan (update_rule refuses to move it).
        return () if obj is None else ("plan",)

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related(_routes_with_suppliers())

    @admin.display(description="routes")
    def route_list(self, rule):
        return route_summary(rule)

    def create_via_service(self, request, form):
        return services.add_rule(
            form.cleaned_data["plan"], actor=self.scope(request), **form_values(form, exclude=("plan",))
        )

    def update_via_service(self, request, obj, form):
        changes = form_changes(form)
        if changes:
            services.update_rule(obj, actor=self.scope(request), changes=changes)

    def delete_via_service(self, request, obj):
        services.remove_rule(obj, actor=self.scope(request))


# --- every route, across rules ----------------------------------------------------------------


@admin.register(Route)
class RouteAdmin(ScopedModelAdmin):
    """Every route of every plan: which rules send calls to a supplier, and how."""

    list_display = (
        "supplier",
        "gateway",
        "rule",
        "plan",
        "priority",
        "weight",
        "max_calls",
        "setup_timeout",
        "stop_hunting",
        "enabled",
    )
    list_display_links = ("supplier",)
    list_select_related = ("supplier", "gateway", "rule__plan", "rule__time_profile")
    list_filter = (
        ("rule__plan", ScopedRelatedFilter),
        ("supplier", ScopedRelatedFilter.where(operator_suppliers)),
        "rule__method",
        "enabled",
        "stop_hunting",
    )
    search_fields = (
        "supplier__name",
        "gateway__name",
        "^rule__prefix",
        "rule__destination",
        "rule__plan__name",
    )
    autocomplete_fields = ("supplier", "gateway")
    choice_filters = {"supplier": operator_suppliers}
    fields = ("rule", *ROUTE_FIELDS)

    def get_readonly_fields(self, request, obj=None):
        # A route stays with its rule (update_route refuses to move it).
        return () if obj is None else ("rule",)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "rule":
            kwargs.setdefault(
                "queryset", RoutingRule.objects.select_related("plan", "time_profile").order_by("plan__name")
            )
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        if db_field.name == "rule":
            # Rules of different plans read alike ("44: Least cost"): name the plan.
            field.label_from_instance = lambda rule: f"{rule.plan} / {rule}"
        return field

    @admin.display(description="plan", ordering="rule__plan__name")
    def plan(self, route):
        return route.rule.plan

    def create_via_service(self, request, form):
        data = form.cleaned_data
        return services.add_route(
            data["rule"],
            actor=self.scope(request),
            supplier=data["supplier"],
            **form_values(form, exclude=("rule", "supplier")),
        )

    def update_via_service(self, request, obj, form):
        changes = form_changes(form)
        if changes:
            services.update_route(obj, actor=self.scope(request), changes=changes)

    def delete_via_service(self, request, obj):
        services.remove_route(obj, actor=self.scope(request))


# --- quality ---------------------------------------------------------------------------------


@admin.register(QualityStat)
class QualityStatAdmin(ReadOnlyModelAdmin):
    """ASR and ACD per supplier and destination, recounted from CDRs by a periodic task."""

    operator_can = READ_ONLY
    reseller_can = NOTHING
    list_display = ("supplier", "destination", "attempts", "answered", "asr_percent", "acd_seconds", "window")
    list_select_related = ("supplier",)
    list_filter = (("supplier", ScopedRelatedFilter.where(operator_suppliers)),)
    search_fields = ("destination", "supplier__name")
    ordering = ("supplier__name", "destination")

    def get_queryset(self, request):
        attempts = NullIf(F("attempts"), 0)
        answered = NullIf(F("answered"), 0)
        return (
            super()
            .get_queryset(request)
            .annotate(
                asr_value=Cast(F("answered"), FloatField()) * 100 / attempts,
                acd_value=Cast(F("answered_seconds"), FloatField()) / answered,
            )
        )

    @admin.display(description="ASR", ordering="asr_value")
    def asr_percent(self, stat):
        return f"{stat.asr:.1f} %"

    @admin.display(description="ACD", ordering="acd_value")
    def acd_seconds(self, stat):
        return f"{stat.acd:.0f} s"

    @admin.display(description="window", ordering="window_end")
    def window(self, stat):
        start, end = localtime(stat.window_start), localtime(stat.window_end)
        end_format = "%H:%M" if start.date() == end.date() else "%Y-%m-%d %H:%M"
        return f"{start:%Y-%m-%d %H:%M} to {end.strftime(end_format)}"
