"""What every admin page shares: scoping by queryset, one write path, service errors on forms.

Reseller staff are plain staff users without Django model permissions. What a login may
see and do in the admin is decided here from its Scope (operator, reseller, nobody), never
from Django's permission tables, so that the admin, the API and the portal agree.

Admins never save domain objects themselves: `save_model`, `save_related`, `delete_model`
and the inline formsets hand the validated form data to the app's service functions. A
service that refuses (DomainError, or a ValidationError from the model's full_clean) rolls
the admin's transaction back and the same POST is shown again with the service's message
next to the field it names.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import NON_FIELD_ERRORS, FieldDoesNotExist, PermissionDenied, ValidationError
from django.db import transaction
from django.forms.models import InlineForeignKeyField
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from apps.core.db import retry_on_conflict
from apps.core.errors import DomainError
from apps.tenancy.scope import Kind, Scope

admin.site.site_header = "Smartswitch"
admin.site.site_title = "Smartswitch admin"
admin.site.index_title = "Switch administration"
# The home page is the dashboard (live figures, alerts, what needs attention) above the app
# list. A template name of its own, not an override of "admin/index.html": the app template
# loader takes the first app holding a name, and django.contrib.admin comes first.
admin.site.index_template = "admin/smartswitch_index.html"

VIEW, ADD, CHANGE, DELETE = "view", "add", "change", "delete"
EVERYTHING = frozenset({VIEW, ADD, CHANGE, DELETE})
READ_ONLY = frozenset({VIEW})
NOTHING = frozenset()


# --- service errors -> form errors -------------------------------------------------------


class WriteRefused(Exception):
    """A service refused an admin write; the admin's transaction is rolled back."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages


def error_pairs(exc: DomainError | ValidationError) -> list[tuple[str | None, str]]:
    """[(field or None, message)] of a domain or model validation error."""
    if isinstance(exc, DomainError):
        return [(exc.field, exc.message)]
    if hasattr(exc, "error_dict"):
        return [
            (None if field == NON_FIELD_ERRORS else field, message)
            for field, field_messages in exc.message_dict.items()
            for message in field_messages
        ]
    return [(None, message) for message in exc.messages]


def show_errors(form: forms.BaseForm, pairs) -> None:
    """Attach `pairs` to `form`, on the field they name when the form has it."""
    for field, message in pairs:
        if field and field not in form.fields:
            field = field.removesuffix("_id")
        form.add_error(field if field in form.fields else None, message)


def _refusals(request) -> dict:
    return request.__dict__.setdefault("_smartswitch_refusals", {})


@contextmanager
def service_errors(request, prefix: str | None = None) -> Iterator[None]:
    """Turn a service's refusal into WriteRefused, keeping its messages for form `prefix`."""
    try:
        yield
    except (DomainError, ValidationError) as exc:
        pairs = error_pairs(exc)
        _refusals(request).setdefault(prefix, []).extend(pairs)
        raise WriteRefused([message for _, message in pairs]) from exc


def form_values(form: forms.ModelForm, *, exclude=()) -> dict:
    """{attname: value} of every concrete model field on `form`, as services take them."""
    return _model_values(form, form.fields, exclude)


def form_changes(form: forms.ModelForm, *, exclude=()) -> dict:
    """{attname: new value} of the model fields the user changed, for update services."""
    return _model_values(form, form.changed_data, exclude)


def _model_values(form, names, exclude) -> dict:
    opts = form.instance._meta
    values = {}
    for name in names:
        form_field = form.fields.get(name)
        if name in exclude or form_field is None or form_field.disabled:
            continue
        if isinstance(form_field, InlineForeignKeyField):
            continue  # an inline's parent: the service takes it as its first argument
        try:
            field = opts.get_field(name)
        except FieldDoesNotExist:
            continue  # a form-only field (a password, an account option)
        if field.concrete and not field.many_to_many and not field.primary_key:
            # construct_instance has already turned the cleaned value into the model's.
            values[field.attname] = getattr(form.instance, field.attname)
    return values


class ScopedModelForm(forms.ModelForm):
    """A model form that knows who fills it in and shows the errors a service raised."""

    scope: Scope = Scope(Kind.NOBODY)
    owner_field: str | None = None
    refusals: dict | None = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Reseller staff never choose the owner: it is theirs, and model validation (a
        # price list must belong to the peer's owner) must see it before the service does.
        if self.owner_field and self.scope.is_reseller and self.instance._state.adding:
            setattr(self.instance, f"{self.owner_field}_id", self.scope.reseller_id)

    def full_clean(self):
        super().full_clean()
        pairs = (self.refusals or {}).get(self.prefix)
        if pairs and hasattr(self, "cleaned_data"):
            show_errors(self, pairs)


# --- scoping and permissions -------------------------------------------------------------


class ScopedRelatedFilter(admin.RelatedFieldListFilter):
    """A related-object filter offering only what the user's scope may see.

    The stock filter lists every row of the related table, which would show reseller A
    the names of reseller B's customers and price lists.
    """

    narrow: Callable | None = None

    @classmethod
    def where(cls, narrow: Callable) -> type["ScopedRelatedFilter"]:
        """This filter with its choices narrowed further, e.g. to customers only."""
        return type(cls.__name__, (cls,), {"narrow": staticmethod(narrow)})

    def field_choices(self, field, request, model_admin):
        queryset = field.related_model._default_manager.visible_to(Scope.of_user(request.user))
        if self.narrow is not None:
            queryset = self.narrow(queryset)
        ordering = self.field_admin_ordering(field, request, model_admin)
        if ordering:
            queryset = queryset.order_by(*ordering)
        return [(obj.pk, str(obj)) for obj in queryset]


class ScopedAccess:
    """Permissions and querysets from the login's Scope; shared by model admins and inlines."""

    form = ScopedModelForm
    # What each kind of login may do here; everyone else (customers, staff without a
    # membership) may do nothing.
    operator_can: frozenset = EVERYTHING
    reseller_can: frozenset = NOTHING
    # Fields, columns and filters reseller staff never see (owners, nodes, supplier legs).
    operator_only_fields: tuple[str, ...] = ()
    # The foreign key to tenancy.Reseller that reseller staff get forced to their own.
    owner_field: str | None = None
    # Further narrowing of a foreign key's choices beyond visibility: {field: qs -> qs}.
    choice_filters: dict[str, Callable] = {}

    def scope(self, request) -> Scope:
        return Scope.of_user(request.user)

    def allows(self, request, action: str) -> bool:
        scope = self.scope(request)
        if scope.is_operator:
            return action in self.operator_can
        if scope.is_reseller:
            return action in self.reseller_can
        return False

    def has_view_permission(self, request, obj=None):
        return self.allows(request, VIEW) or self.allows(request, CHANGE)

    def has_add_permission(self, request, obj=None):
        return self.allows(request, ADD)

    def has_change_permission(self, request, obj=None):
        return self.allows(request, CHANGE)

    def has_delete_permission(self, request, obj=None):
        return self.allows(request, DELETE)

    def has_module_permission(self, request):
        return any(self.allows(request, action) for action in EVERYTHING)

    def get_queryset(self, request):
        return super().get_queryset(request).visible_to(self.scope(request))

    def scoped_choices(self, db_field, request):
        related = db_field.remote_field.model._default_manager.all()
        if not hasattr(related, "visible_to"):
            return related if self.scope(request).is_operator else related.none()
        related = related.visible_to(self.scope(request))
        narrow = self.choice_filters.get(db_field.name)
        return narrow(related) if narrow else related

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        kwargs.setdefault("queryset", self.scoped_choices(db_field, request))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        kwargs.setdefault("queryset", self.scoped_choices(db_field, request))
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def hidden_fields(self, request) -> set[str]:
        return set() if self.scope(request).is_operator else set(self.operator_only_fields)

    def base_fieldsets(self, request, obj=None):
        """The fieldsets before operator-only fields are taken out for reseller staff."""
        return super().get_fieldsets(request, obj)

    def get_fieldsets(self, request, obj=None):
        hidden = self.hidden_fields(request)
        fieldsets = self.base_fieldsets(request, obj)
        if not hidden:
            return fieldsets
        return [
            (name, {**options, "fields": _without(options["fields"], hidden)}) for name, options in fieldsets
        ]

    def prepare_form(self, form_class, request):
        """Tell a freshly built form class who fills it in and what services refused."""
        form_class.scope = self.scope(request)
        form_class.owner_field = self.owner_field
        form_class.refusals = _refusals(request)
        return form_class


def _without(fields, hidden):
    kept = []
    for entry in fields:
        if isinstance(entry, list | tuple):
            entry = tuple(name for name in entry if name not in hidden)
            if entry:
                kept.append(entry)
        elif entry not in hidden:
            kept.append(entry)
    return kept


@dataclass(frozen=True)
class ObjectTool:
    """A small form on one object (a payment, a suspension) whose submit calls one service.

    `run(admin, request, obj, cleaned_data)` calls the service and returns the success
    message; `show(obj)` says whether the tool applies to `obj` at all.
    """

    name: str
    label: str
    form: type[forms.Form]
    run: Callable
    permission: str = CHANGE
    show: Callable | None = None
    help: str = ""


class ConfirmForm(forms.Form):
    """A tool that needs nothing but a click."""


class ScopedModelAdmin(ScopedAccess, admin.ModelAdmin):
    """A model admin scoped by `visible_to` whose writes go through services."""

    add_form: type[forms.ModelForm] | None = None
    change_form_template = "admin/smartswitch/change_form.html"
    object_tools: tuple[ObjectTool, ...] = ()

    # -- what is shown --

    def get_list_display(self, request):
        hidden = self.hidden_fields(request)
        return [name for name in super().get_list_display(request) if name not in hidden]

    def get_list_filter(self, request):
        hidden = self.hidden_fields(request)
        return [
            entry
            for entry in super().get_list_filter(request)
            if (entry[0] if isinstance(entry, tuple) else entry) not in hidden
        ]

    def lookup_allowed(self, lookup, value, request=None):
        # The stock rule lets a query string filter on any local field and on the filters
        # of the operator's sidebar (?buy_cost__gt=, ?supplier__id__exact=): reseller staff
        # could probe the columns they are not shown.
        hidden = self.hidden_fields(request) if request is not None else set(self.operator_only_fields)
        if any(lookup == name or lookup.startswith(f"{name}__") for name in hidden):
            return False
        return super().lookup_allowed(lookup, value, request)

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None and self.add_form is not None:
            kwargs.setdefault("form", self.add_form)
        return self.prepare_form(super().get_form(request, obj, change, **kwargs), request)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None and not add:
            context["object_tools"] = [
                {"label": tool.label, "url": reverse(self._url_name("tool"), args=[obj.pk, tool.name])}
                for tool in self.object_tools
                if self._tool_applies(request, tool, obj)
            ]
        return super().render_change_form(request, context, add, change, form_url, obj)

    # -- the one write path --

    def create_via_service(self, request, form):
        """Create the object of a valid add form through a service and return it."""
        raise NotImplementedError(f"{type(self).__name__} cannot add objects.")

    def update_via_service(self, request, obj, form):
        """Apply a valid change form through a service."""
        raise NotImplementedError(f"{type(self).__name__} cannot change objects.")

    def delete_via_service(self, request, obj):
        raise NotImplementedError(f"{type(self).__name__} cannot delete objects.")

    def save_model(self, request, obj, form, change):
        with service_errors(request):
            if change:
                self.update_via_service(request, obj, form)
                return
            created = self.create_via_service(request, form)
        # The admin goes on with the form's instance (log entry, redirect): make it the row.
        obj.pk = created.pk
        obj._state.adding = False
        obj._state.db = created._state.db
        obj.refresh_from_db()

    def save_related(self, request, form, formsets, change):
        # No form.save_m2m(): many-to-many fields are written by the services.
        for formset in formsets:
            self.save_formset(request, form, formset, change)

    def save_formset(self, request, form, formset, change):
        formset.inline.save_formset_via_services(request, formset)

    def delete_model(self, request, obj):
        with service_errors(request):
            self.delete_via_service(request, obj)

    def delete_queryset(self, request, queryset):
        # All or nothing: a refusal halfway must not leave half the selection deleted.
        with transaction.atomic():
            for obj in queryset:
                self.delete_model(request, obj)

    def replaying_conflicts(self, request, view, *args):
        """Run a writing admin view in one transaction, replayed whole on a write conflict.

        Django's admin wraps its saves in its own transaction, inside which the services
        cannot retry; on Galera the conflict surfaces at that transaction's commit. The
        messages a failed attempt queued are dropped so the user sees each one once.
        """
        if request.method != "POST":
            return view(request, *args)
        storage = messages.get_messages(request)
        queued = list(getattr(storage, "_queued_messages", []))

        def attempt():
            if hasattr(storage, "_queued_messages"):
                storage._queued_messages[:] = queued
            return view(request, *args)

        return retry_on_conflict(attempt)()

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        view = super().changeform_view
        try:
            return self.replaying_conflicts(request, view, object_id, form_url, extra_context)
        except WriteRefused:
            pass
        # The write is rolled back; validating the same POST again attaches the service's
        # messages to the forms (see ScopedModelForm.full_clean), so the user sees them next
        # to what they typed.
        try:
            return self.replaying_conflicts(request, view, object_id, form_url, extra_context)
        except WriteRefused as refused:
            # A refusal no form could carry (a row the formset deems unchanged): say it.
            self.message_user(request, " ".join(refused.messages), messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def delete_view(self, request, object_id, extra_context=None):
        try:
            return self.replaying_conflicts(request, super().delete_view, object_id, extra_context)
        except WriteRefused as refused:
            self.message_user(request, " ".join(refused.messages), messages.ERROR)
            return HttpResponseRedirect(reverse(self._url_name("change"), args=[object_id]))

    def changelist_view(self, request, extra_context=None):
        try:
            return self.replaying_conflicts(request, super().changelist_view, extra_context)
        except WriteRefused as refused:
            self.message_user(request, " ".join(refused.messages), messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    # -- object tools: small forms that call one service --

    def _url_name(self, view: str) -> str:
        return f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_{view}"

    def get_urls(self):
        tool = path(
            "<path:object_id>/do/<slug:tool_name>/",
            self.admin_site.admin_view(self.tool_view),
            name=f"{self.opts.app_label}_{self.opts.model_name}_tool",
        )
        return [tool, *super().get_urls()]

    def _tool_applies(self, request, tool: ObjectTool, obj) -> bool:
        return self.allows(request, tool.permission) and (tool.show is None or tool.show(obj))

    def tool_view(self, request, object_id, tool_name):
        tool = next((tool for tool in self.object_tools if tool.name == tool_name), None)
        obj = self.get_object(request, unquote(object_id))
        if tool is None or obj is None:
            raise Http404  # someone else's object reads as absent, never as forbidden
        if not self._tool_applies(request, tool, obj):
            raise PermissionDenied
        form = tool.form(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            try:
                message = tool.run(self, request, obj, form.cleaned_data)
            except (DomainError, ValidationError) as exc:
                show_errors(form, error_pairs(exc))
            else:
                if message:
                    self.message_user(request, message, messages.SUCCESS)
                return HttpResponseRedirect(reverse(self._url_name("change"), args=[obj.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": f"{tool.label}: {obj}",
            "subtitle": None,
            "tool": tool,
            "form": form,
            "object": obj,
            "opts": self.opts,
            "app_label": self.opts.app_label,
            "change_url": reverse(self._url_name("change"), args=[obj.pk]),
            "media": self.media + form.media,
        }
        return TemplateResponse(request, "admin/smartswitch/tool_form.html", context)

    def confirm_action(self, request, queryset, form_class, *, title: str, action: str):
        """For an action that needs input: the bound valid form, or the page asking for it."""
        if "apply" in request.POST:
            form = form_class(request.POST)
            if form.is_valid():
                return form, None
        else:
            form = form_class()
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "subtitle": None,
            "form": form,
            "objects": queryset,
            "action": action,
            "opts": self.opts,
            "app_label": self.opts.app_label,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        }
        return None, TemplateResponse(request, "admin/smartswitch/action_form.html", context)


class ReadOnlyModelAdmin(ScopedModelAdmin):
    """Rows written by the switch or by services only (CDRs, ledger, audit): look, never touch.

    These tables grow without bound: no full COUNT(*) and no per-filter facet counts.
    """

    operator_can = READ_ONLY
    reseller_can = READ_ONLY
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER


class ScopedInline(ScopedAccess, admin.TabularInline):
    """An inline whose rows are added, changed and removed through services.

    Subclasses implement `create`, `update` and `remove`.
    """

    extra = 0

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        self.prepare_form(formset.form, request)
        formset.inline = self
        return formset

    def create(self, request, parent, form):
        raise NotImplementedError

    def update(self, request, obj, form):
        raise NotImplementedError

    def remove(self, request, obj):
        raise NotImplementedError

    def save_formset_via_services(self, request, formset) -> None:
        # The admin's change message reads these three lists, which formset.save() fills.
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        deleted = set(formset.deleted_forms) if formset.can_delete else set()
        for form in formset.forms:
            adding = form.instance._state.adding
            if form in deleted:
                if not adding:
                    with service_errors(request, form.prefix):
                        self.remove(request, form.instance)
                    formset.deleted_objects.append(form.instance)
                continue
            if not form.has_changed():
                continue
            with service_errors(request, form.prefix):
                if adding:
                    formset.new_objects.append(self.create(request, formset.instance, form))
                else:
                    self.update(request, form.instance, form)
                    formset.changed_objects.append((form.instance, form.changed_data))
