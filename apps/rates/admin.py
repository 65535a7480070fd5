"""Price lists and their rates in the admin."""

from django import forms
from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import slugify

from apps.core.admin import (
    ADD,
    CHANGE,
    EVERYTHING,
    READ_ONLY,
    VIEW,
    ConfirmForm,
    ObjectTool,
    ScopedModelAdmin,
    ScopedModelForm,
    ScopedRelatedFilter,
    form_changes,
    form_values,
)
from apps.core.exports import FORMATS, export_response
from apps.rates import services
from apps.rates.exports import HEADER, price_chunks, prices_in_force
from apps.rates.importing.report import ImportReport
from apps.rates.models import ImportTemplate, PriceImport, Rate, RateTable, TimeProfile
from apps.rates.services import activation, imports, time_profiles


@admin.register(RateTable)
class RateTableAdmin(ScopedModelAdmin):
    # Price lists are referenced by peers and CDR prices: there is no delete service.
    operator_can = frozenset({VIEW, ADD, CHANGE})
    reseller_can = frozenset({VIEW, ADD, CHANGE})
    owner_field = "reseller"
    operator_only_fields = ("reseller",)
    list_display = (
        "name",
        "purpose",
        "currency",
        "reseller",
        "price_increase_notice_days",
        "on_net_price",
        "rates_link",
    )
    list_filter = ("purpose", "currency", ("reseller", ScopedRelatedFilter))
    list_select_related = ("reseller",)
    search_fields = ("name", "description")
    fields = (
        "name",
        "reseller",
        "purpose",
        "currency",
        "price_increase_notice_days",
        "on_net_price",
        "prices_include_tax",
        "description",
        "rates_link",
        "used_by",
    )

    def get_readonly_fields(self, request, obj=None):
        # The on-net price is set where the table services take it (TABLE_SETTINGS); until
        # then it is shown, not offered as a change they would refuse.
        fixed = () if "on_net_price" in services.TABLE_SETTINGS else ("on_net_price",)
        if obj is None:
            return (*fixed, "rates_link", "used_by")
        # Owner and purpose are fixed at creation (update_rate_table refuses them).
        return ("reseller", "purpose", *fixed, "rates_link", "used_by")

    def get_fields(self, request, obj=None):
        fields = list(self.fields)
        return fields[:-2] if obj is None else fields

    def formfield_for_choice_field(self, db_field, request, **kwargs):
        if db_field.name == "purpose" and not self.scope(request).is_operator:
            kwargs["choices"] = [c for c in RateTable.Purpose.choices if c[0] == RateTable.Purpose.SELL]
        return super().formfield_for_choice_field(db_field, request, **kwargs)

    @admin.display(description="rates")
    def rates_link(self, table):
        url = reverse("admin:rates_rate_changelist") + f"?table__id__exact={table.pk}"
        export = self._url_name("export")
        return format_html(
            '<a href="{}">Rates of {}</a> · prices in force: <a href="{}" class="rates-export">CSV</a> '
            '<a href="{}" class="rates-export">XLSX</a>',
            url,
            table.name,
            reverse(export, args=[table.pk, "csv"]),
            reverse(export, args=[table.pk, "xlsx"]),
        )

    def get_urls(self):
        export = path(
            "<path:object_id>/export/<str:fmt>/",
            self.admin_site.admin_view(self.export_view),
            name=f"{self.opts.app_label}_{self.opts.model_name}_export",
        )
        return [export, *super().get_urls()]

    def export_view(self, request, object_id, fmt):
        """The table's prices in force now, in the import's columns, as CSV or XLSX."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        table = self.get_object(request, unquote(object_id))
        if table is None or fmt not in FORMATS:
            raise Http404  # another owner's table reads as absent
        rates = prices_in_force(table, timezone.now(), scope=self.scope(request))
        return export_response(
            request,
            fmt,
            filename=f"{slugify(table.name) or 'prices'}-{timezone.localdate():%Y%m%d}",
            header=HEADER,
            chunks=price_chunks(rates),
            title=table.name,
        )

    @admin.display(description="used by")
    def used_by(self, table):
        peers = table.customers.all() if table.purpose == RateTable.Purpose.SELL else table.suppliers.all()
        names = list(peers.values_list("name", flat=True)[:20])
        return ", ".join(names) or "-"

    def create_via_service(self, request, form):
        return services.create_rate_table(actor=self.scope(request), **form_values(form))

    def update_via_service(self, request, obj, form):
        changes = form_changes(form)
        if changes:
            services.update_rate_table(obj, actor=self.scope(request), changes=changes)


class InForceFilter(admin.SimpleListFilter):
    title = "in force"
    parameter_name = "period"

    def lookups(self, request, model_admin):
        return [("now", "In force now"), ("future", "Starting later"), ("ended", "Ended")]

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "now":
            return queryset.effective_at(now)
        if self.value() == "future":
            return queryset.filter(effective_from__gt=now)
        if self.value() == "ended":
            return queryset.filter(effective_to__lte=now)
        return queryset


class TimePeriodFilter(admin.SimpleListFilter):
    title = "time period"
    parameter_name = "time_period"

    def lookups(self, request, model_admin):
        names = TimeProfile.objects.values_list("name", flat=True)
        return [("-", "Any time"), *((name, name) for name in names)]

    def queryset(self, request, queryset):
        if self.value() is None:
            return queryset
        return queryset.filter(period="" if self.value() == "-" else self.value())


@admin.register(Rate)
class RateAdmin(ScopedModelAdmin):
    # A price changes by adding a rate with a later start: rows are history, never edited.
    operator_can = frozenset({VIEW, ADD})

    def get_queryset(self, request):
        # Rows staged by an import, or replaced by one, are not the table readers see.
        return super().get_queryset(request).live()

    reseller_can = frozenset({VIEW, ADD})
    operator_only_fields = ("table__reseller",)
    list_display = (
        "prefix",
        "period",
        "destination",
        "table",
        "price",
        "connection_fee",
        "billing_notation",
        "effective_from",
        "effective_to",
    )
    list_filter = (
        InForceFilter,
        ("table", ScopedRelatedFilter),
        ("table__reseller", ScopedRelatedFilter),
        TimePeriodFilter,
    )
    list_select_related = ("table",)
    search_fields = ("^prefix", "destination")
    autocomplete_fields = ("table",)
    # Price lists run to hundreds of thousands of rows: no full COUNT(*), no facet counts.
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    list_per_page = 200
    fields = (
        "table",
        "prefix",
        "destination",
        "price",
        "connection_fee",
        "min_seconds",
        "increment_seconds",
        "free_seconds",
        "effective_from",
        "effective_to",
        "period",
    )

    def get_changeform_initial_data(self, request):
        return {"effective_from": timezone.now(), **super().get_changeform_initial_data(request)}

    @admin.display(description="min/incr/free")
    def billing_notation(self, rate):
        return rate.billing_notation

    def create_via_service(self, request, form):
        rate = form.instance
        services.add_rates(rate.table, [rate], actor=self.scope(request))
        if rate.pk is None:  # backends that do not return ids from bulk inserts
            rate = Rate.objects.get(
                table=rate.table, prefix=rate.prefix, period=rate.period, effective_from=rate.effective_from
            )
        return rate


# --- price imports: upload -> job reads (progress) -> preview -> confirm -> job activates ----


class PriceImportUploadForm(ScopedModelForm):
    file = forms.FileField(help_text="CSV (UTF-8 or Latin-1) or XLSX price list.")

    class Meta:
        model = PriceImport
        fields = ("table", "template", "mode", "effective_from", "skip_invalid")


def _confirm(admin_, request, price_import, data):
    activation.confirm_price_import(price_import, actor=admin_.scope(request))
    return "Import confirmed: a worker activates it now; this page shows its progress."


def _cancel(admin_, request, price_import, data):
    imports.cancel_price_import(price_import, actor=admin_.scope(request))
    return "Import cancelled; nothing was written to the price list."


@admin.register(PriceImport)
class PriceImportAdmin(ScopedModelAdmin):
    operator_can = frozenset({VIEW, ADD, CHANGE})
    reseller_can = frozenset({VIEW, ADD, CHANGE})
    add_form = PriceImportUploadForm
    # Refreshes itself every 2 s while a worker reads or activates the import.
    change_form_template = "admin/rates/priceimport/change_form.html"
    list_display = ("created_at", "table", "file_name", "mode", "state", "progress", "actor_label")
    list_filter = ("state", "mode")
    list_select_related = ("table",)
    readonly_fields = (
        "table",
        "file_name",
        "mode",
        "state",
        "effective_from",
        "skip_invalid",
        "progress",
        "report_text",
        "actor_label",
        "created_at",
        "finished_at",
        "version",
    )
    object_tools = (
        ObjectTool(
            "confirm",
            "Confirm and activate",
            ConfirmForm,
            _confirm,
            show=lambda obj: obj.state == PriceImport.State.STAGED,
            help="The staged rows become the price list's next version, live in one switch.",
        ),
        ObjectTool(
            "cancel",
            "Cancel this import",
            ConfirmForm,
            _cancel,
            show=lambda obj: (
                obj.state in (PriceImport.State.RECEIVED, PriceImport.State.STAGED, PriceImport.State.FAILED)
            ),
        ),
    )

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("table", "file", "template", "mode", "effective_from", "skip_invalid")
        return self.readonly_fields

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else self.readonly_fields

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "table":
            kwargs["queryset"] = RateTable.objects.visible_to(self.scope(request))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    @admin.display(description="progress")
    def progress(self, obj):
        if obj.state in (PriceImport.State.RECEIVED, PriceImport.State.QUEUED):
            return f"waiting for a worker ({obj.rows_total} rows)"
        if obj.state in (PriceImport.State.READING, PriceImport.State.ACTIVATING):
            # Plain HTML and CSS; rows_total is the file's line count while it is read.
            return format_html(
                '<div class="import-progress" role="progressbar" aria-valuenow="{}" aria-valuemin="0" '
                'aria-valuemax="100" style="width:24em;max-width:100%;height:1.1em;border:1px solid #999;'
                'background:#eee;margin-bottom:.3em"><div style="width:{}%;height:100%;background:#417690">'
                "</div></div>{}: {}% ({} of {} rows, {} rows/s)",
                obj.percent,
                obj.percent,
                obj.phase,
                obj.percent,
                obj.rows_done,
                obj.rows_total,
                f"{obj.rows_per_second:,.0f}",
            )
        return f"{obj.phase or '-'} ({obj.rows_total} rows)"

    @admin.display(description="report")
    def change_view(self, request, object_id, form_url="", extra_context=None):
        # An import is moved on by its Confirm and Cancel tools; there is nothing to save.
        quiet = {"show_save": False, "show_save_and_continue": False, "show_save_and_add_another": False}
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), **quiet})

    def report_text(self, obj):
        # The same lines the import_prices command prints.
        if not obj.report:
            return "The report appears here once a worker has read the file."
        return format_html(
            '<pre style="white-space: pre-wrap; overflow-wrap: anywhere">{}</pre>',
            "\n".join(ImportReport.from_dict(obj.report).lines()),
        )

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        context["auto_refresh"] = obj is not None and obj.busy
        return super().render_change_form(request, context, add, change, form_url, obj)

    def create_via_service(self, request, form):
        # Returns at once: the file is kept on this node and its worker reads it (progress,
        # then the preview, on the import's page).
        upload = form.cleaned_data["file"]
        values = form_values(form)
        return imports.receive_price_file(
            form.cleaned_data["table"],
            upload.chunks(),
            actor=self.scope(request),
            filename=upload.name,
            template=form.cleaned_data.get("template"),
            mode=values["mode"],
            effective_from=values.get("effective_from"),
            skip_invalid=values.get("skip_invalid", False),
        )

    def response_add(self, request, obj, post_url_continue=None):
        # Straight to the import's page: progress while it is read, then the preview
        # (errors, diff, notice and margin flags) and Confirm.
        return HttpResponseRedirect(reverse("admin:rates_priceimport_change", args=[obj.pk]))


@admin.register(ImportTemplate)
class ImportTemplateAdmin(ScopedModelAdmin):
    """How a supplier writes its price lists; chosen when a file is uploaded."""

    operator_can = frozenset({VIEW, ADD, CHANGE})
    reseller_can = frozenset({VIEW, ADD, CHANGE})
    list_display = ("name", "table", "delimiter", "decimal_comma", "date_format", "increment_column")
    list_select_related = ("table",)
    search_fields = ("name",)
    fields = (
        "name",
        "table",
        "columns",
        "delimiter",
        "decimal_comma",
        "date_format",
        "increment_column",
        "clean_prefix",
        "skip_lines",
    )

    def create_via_service(self, request, form):
        values = form_values(form)
        table = RateTable.objects.get(pk=values.pop("table_id")) if values.get("table_id") else None
        values.pop("table_id", None)
        return services.create_import_template(actor=self.scope(request), table=table, **values)

    def update_via_service(self, request, obj, form):
        changes = form_changes(form)
        if changes:
            services.update_import_template(obj, actor=self.scope(request), changes=changes)


@admin.register(TimeProfile)
class TimeProfileAdmin(ScopedModelAdmin):
    """Named hours of the week: price lists name them in their period column, rules route by them."""

    operator_can = EVERYTHING
    # Resellers write the names in their sell lists' period column.
    reseller_can = READ_ONLY
    list_display = ("name", "windows", "description")
    search_fields = ("name", "description")
    fields = ("name", "windows", "description", "used_by")

    def get_readonly_fields(self, request, obj=None):
        # The name is what price lists write: fixed once created (update_time_profile refuses it).
        return ("used_by",) if obj is None else ("name", "used_by")

    @admin.display(description="used by")
    def used_by(self, profile):
        if profile.pk is None:
            return "-"
        return ", ".join(time_profiles.profile_users(profile)) or "nothing yet"

    def create_via_service(self, request, form):
        return time_profiles.create_time_profile(actor=self.scope(request), **form_values(form))

    def update_via_service(self, request, obj, form):
        changes = form_changes(form)
        if changes:
            time_profiles.update_time_profile(obj, actor=self.scope(request), changes=changes)

    def delete_via_service(self, request, obj):
        time_profiles.delete_time_profile(obj, actor=self.scope(request))
