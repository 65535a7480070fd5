"""Build the demo cast through the services, step by step, skipping what exists."""

import random
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.utils import timezone
from django.utils.text import slugify

from apps.billing import services as billing
from apps.billing.models import Account, LedgerEntry
from apps.billing.services import rating
from apps.bundles.models import Bundle
from apps.bundles.services import catalogue as bundle_catalogue
from apps.cdr.models import Cdr
from apps.core.demo.calls import CallMaker
from apps.core.demo.cast import (
    API_KEY_NAME,
    CALL_ID_PREFIX,
    CONTROLLERS,
    CUSTOMERS,
    DEFAULT_CDRS,
    DEMO_PASSWORD,
    DIDS,
    NODES,
    RESELLERS,
    ROUTING_PLANS,
    SEED,
    SELL_TABLES,
    SUPPLIERS,
    CustomerSpec,
    PlanSpec,
)
from apps.core.demo.prices import PriceBook, load_destinations
from apps.dids import services as did_services
from apps.dids.models import Did
from apps.fraud import rules as fraud_rules
from apps.fraud.models import Controller
from apps.nodes import services as node_services
from apps.nodes.models import ClusterSettings, Node
from apps.peers import services as peer_services
from apps.peers.models import Peer, SipAccount
from apps.rates import services as rate_services
from apps.rates.models import RateTable
from apps.routing import services as routing_services
from apps.routing.models import RoutingPlan
from apps.routing.quality import refresh_quality_stats
from apps.tenancy import services as tenancy_services
from apps.tenancy.models import ApiKey, Reseller
from apps.tenancy.scope import Kind, Scope

DEMO_BUNDLE = "UK 500 minutes"


@dataclass
class Login:
    username: str
    role: str
    path: str
    created: bool


@dataclass
class Report:
    """What a run made and found: counts per kind as [created, existing], logins, the API key."""

    counts: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    logins: list[Login] = field(default_factory=list)
    api_key: ApiKey | None = None
    api_token: str | None = None  # only when the key was issued by this run
    timings: list[tuple[str, float]] = field(default_factory=list)

    def note(self, kind: str, created: bool, amount: int = 1) -> None:
        self.counts[kind][0 if created else 1] += amount


class DemoLoader:
    """Build the demo cast step by step; each step skips what is already there."""

    def __init__(
        self, *, password: str = DEMO_PASSWORD, cdrs: int = DEFAULT_CDRS, now: datetime | None = None
    ) -> None:
        self.password = password
        self.cdr_count = cdrs
        self.now = (now or timezone.now()).replace(microsecond=0)
        self.today = self.now.replace(hour=0, minute=0, second=0)
        self.report = Report()
        self.operator = Scope.system()
        self.nodes: dict[str, Node] = {}
        self.resellers: dict[str, Reseller] = {}
        self.staff_scopes: dict[str, Scope] = {}
        self.tables: dict[str, RateTable] = {}
        self.suppliers: dict[str, Peer] = {}
        self.customers: dict[str, Peer] = {}
        self.plans: dict[str, RoutingPlan] = {}

    def run(self) -> Report:
        for name, step in (
            ("logins", self.load_operator),
            ("nodes", self.load_nodes),
            ("resellers", self.load_resellers),
            ("price lists", self.load_rate_tables),
            ("suppliers", self.load_suppliers),
            ("customers", self.load_customers),
            ("routing", self.load_routing),
            ("fraud controllers", self.load_controllers),
            ("numbers", self.load_dids),
            ("payments", self.load_payments),
            ("bundles", self.load_bundles),
            ("calls", self.load_calls),
            ("API key", self.load_api_key),
        ):
            started = time.perf_counter()
            step()
            self.report.timings.append((name, time.perf_counter() - started))
        return self.report

    def _login(self, username: str, role: str, path: str, create: Callable[[], object]):
        user = get_user_model().objects.filter(username=username).first()
        created = user is None
        if created:
            user = create()
        self.report.note("logins", created)
        self.report.logins.append(Login(username, role, path, created))
        return user

    def _actor_for(self, owner: str | None) -> Scope:
        return self.staff_scopes[owner] if owner else self.operator

    def _owner_id(self, owner: str | None) -> int | None:
        return self.resellers[owner].pk if owner else None

    # Logins, nodes and tenants

    def load_operator(self) -> None:
        User = get_user_model()
        user = self._login(
            "operator",
            "operator (superuser)",
            "/admin/",
            lambda: User.objects.create_superuser("operator", "operator@demo.example.net", self.password),
        )
        # The audit trail names the operator login as the author of everything it set up.
        if user.is_superuser and user.is_active:
            self.operator = Scope.of_user(user)

    def load_nodes(self) -> None:
        for spec in NODES:
            node = Node.objects.filter(name=spec.name).first()
            self.report.note("nodes", node is None)
            if node is None:
                node = node_services.create_node(
                    actor=self.operator,
                    name=spec.name,
                    management_address=spec.management_address,
                    sip_address=spec.sip_address,
                    public_hostname=spec.public_hostname,
                )
            self.nodes[spec.name] = node

    def load_resellers(self) -> None:
        for spec in RESELLERS:
            reseller = Reseller.objects.filter(name=spec.name).first()
            self.report.note("resellers", reseller is None)
            if reseller is None:
                reseller = tenancy_services.create_reseller(
                    actor=self.operator,
                    name=spec.name,
                    company=spec.company,
                    email=spec.email,
                )
            self.resellers[spec.name] = reseller
            user = self._login(
                spec.staff,
                f"{spec.name} staff",
                "/admin/",
                lambda reseller=reseller, spec=spec: (
                    tenancy_services.add_reseller_staff(
                        reseller,
                        actor=self.operator,
                        username=spec.staff,
                        password=self.password,
                        email=f"{spec.staff}@demo.example.net",
                    ).user
                ),
            )
            # The reseller's own staff set up its customers and prices, as they would in the
            # admin. A login of that name that is someone else's is left alone.
            scope = Scope.of_user(user)
            mine = scope.kind is Kind.RESELLER and scope.reseller_id == reseller.pk
            self.staff_scopes[spec.name] = scope if mine else self.operator

    # Price lists

    def load_rate_tables(self) -> None:
        wanted = [(s.table, None, RateTable.Purpose.BUY, f"What {s.name} charges us.") for s in SUPPLIERS]
        wanted += [(s.name, s.owner, RateTable.Purpose.SELL, s.description) for s in SELL_TABLES]
        book = None
        for name, owner, purpose, description in wanted:
            table = RateTable.objects.filter(reseller=self._owner_id(owner), name=name).first()
            self.report.note("price lists", table is None)
            if table is None:
                if book is None:
                    book = PriceBook.build(
                        load_destinations(), start=self.today - timedelta(days=90), today=self.today
                    )
                actor = self._actor_for(owner)
                table = rate_services.create_rate_table(
                    actor=actor,
                    name=name,
                    purpose=purpose,
                    currency="USD",
                    reseller_id=self._owner_id(owner),
                    description=description,
                )
                self.report.note("rates", True, rate_services.add_rates(table, book.rates(name), actor=actor))
            self.tables[name] = table

    # Peers

    def load_suppliers(self) -> None:
        for spec in SUPPLIERS:
            peer = Peer.objects.filter(reseller__isnull=True, name=spec.name).first()
            self.report.note("suppliers", peer is None)
            if peer is None:
                peer = peer_services.create_peer(
                    actor=self.operator,
                    name=spec.name,
                    role=Peer.Role.SUPPLIER,
                    company=spec.company,
                    buy_rate_table_id=self.tables[spec.table].pk,
                    max_calls=spec.max_calls,
                )
                for gw in spec.gateways:
                    peer_services.add_gateway(
                        peer,
                        actor=self.operator,
                        name=gw.name,
                        host=gw.host,
                        port=gw.port,
                        transport=gw.transport,
                        priority=gw.priority,
                        weight=gw.weight,
                        prefix=gw.prefix,
                        probing=gw.probing,
                    )
                    self.report.note("gateways", True)
                peer_services.assign_peer_to_nodes(peer, list(self.nodes.values()), actor=self.operator)
            self.suppliers[spec.name] = peer

    def load_customers(self) -> None:
        for spec in CUSTOMERS:
            actor = self._actor_for(spec.owner)
            peer = Peer.objects.filter(reseller=self._owner_id(spec.owner), name=spec.name).first()
            self.report.note("customers", peer is None)
            if peer is None:
                peer = self._create_customer(spec, actor)
            self.customers[spec.name] = peer
            if spec.login:
                self._login(
                    spec.login,
                    f"{spec.name} (customer)",
                    "/portal/",
                    lambda peer=peer, spec=spec, actor=actor: (
                        tenancy_services.add_customer_login(
                            peer,
                            actor=actor,
                            username=spec.login,
                            password=self.password,
                            email=f"{spec.login}@demo.example.net",
                        ).user
                    ),
                )

    def _create_customer(self, spec: CustomerSpec, actor: Scope) -> Peer:
        peer = peer_services.create_peer(
            actor=actor,
            name=spec.name,
            role=Peer.Role.CUSTOMER,
            reseller_id=self._owner_id(spec.owner),
            company=spec.company,
            sell_rate_table_id=self.tables[spec.table].pk,
            account_mode=spec.mode,
            credit_limit=spec.credit_limit,
            max_calls=spec.max_calls,
            max_cps=spec.max_cps,
        )
        for username in spec.sip_users:
            peer_services.add_sip_account(
                peer,
                actor=actor,
                username=username,
                domain=spec.sip_domain,
                password=self.password,
            )
            self.report.note("SIP accounts", True)
        for ip, mask, description in spec.endpoints:
            peer_services.add_endpoint(peer, actor=actor, ip=ip, mask=mask, description=description)
            self.report.note("IP endpoints", True)
        for position, (pattern, replacement) in enumerate(spec.rewrites):
            peer_services.add_rewrite_rule(
                peer, actor=actor, field="callee", pattern=pattern, replacement=replacement, position=position
            )
        nodes = [self.nodes[n] for n in spec.nodes]
        peer_services.assign_peer_to_nodes(peer, nodes, actor=self.operator)
        return peer

    # Routing

    def load_routing(self) -> None:
        for spec in ROUTING_PLANS:
            plan = RoutingPlan.objects.filter(name=spec.name).first()
            self.report.note("routing plans", plan is None)
            if plan is None:
                plan = self._create_plan(spec)
            self.plans[spec.name] = plan
        # Who routes by which plan is set only where nothing is set yet: a plan the operator
        # chose since the last run stays.
        for spec in ROUTING_PLANS:
            plan = self.plans[spec.name]
            if spec.cluster_default and ClusterSettings.load().default_routing_plan_id is None:
                node_services.update_cluster_settings(
                    actor=self.operator, changes={"default_routing_plan_id": plan.pk}
                )
            for name in spec.resellers:
                reseller = Reseller.objects.get(pk=self.resellers[name].pk)
                if reseller.routing_plan_id is None:
                    tenancy_services.update_reseller(
                        reseller, actor=self.operator, changes={"routing_plan_id": plan.pk}
                    )

    def load_controllers(self) -> None:
        for spec in CONTROLLERS:
            owner_id = self._owner_id(spec.owner)
            exists = Controller.objects.filter(reseller_id=owner_id, name=spec.name).exists()
            self.report.note("fraud controllers", not exists)
            if not exists:
                fraud_rules.create_controller(
                    actor=self._actor_for(spec.owner),
                    reseller_id=owner_id,
                    name=spec.name,
                    kind=spec.kind,
                    **spec.settings,
                )

    def _create_plan(self, spec: PlanSpec) -> RoutingPlan:
        plan = routing_services.create_plan(
            actor=self.operator,
            name=spec.name,
            description=spec.description,
            parent_id=self.plans[spec.parent].pk if spec.parent else None,
        )
        for rule_spec in spec.rules:
            rule = routing_services.add_rule(
                plan,
                actor=self.operator,
                prefix=rule_spec.prefix,
                method=rule_spec.method,
                quality_metric=rule_spec.quality_metric,
                quality_tolerance=rule_spec.quality_tolerance,
                description=rule_spec.description,
            )
            self.report.note("routing rules", True)
            for route in rule_spec.routes:
                routing_services.add_route(
                    rule,
                    actor=self.operator,
                    supplier=self.suppliers[route.supplier],
                    priority=route.priority,
                    weight=route.weight,
                    setup_timeout=route.setup_timeout,
                    stop_hunting=route.stop_hunting,
                )
                self.report.note("routes", True)
        return plan

    # Numbers

    def load_dids(self) -> None:
        for spec in DIDS:
            exists = Did.objects.filter(number=spec.number).exists()
            self.report.note("DIDs", not exists)
            if exists:
                continue
            customer = self.customers[spec.customer] if spec.customer else None
            targets = [
                (SipAccount.objects.get(peer=customer, username=username), None) for username in spec.targets
            ]
            # Numbers are bought and assigned by the operator; the reseller routes them after.
            did_services.create_did(
                actor=self.operator,
                number=spec.number,
                last_number=spec.last_number,
                supplier_id=self.suppliers[spec.supplier].pk,
                buy_monthly=spec.buy_monthly,
                buy_per_minute=spec.buy_per_minute,
                sell_monthly=spec.sell_monthly,
                sell_per_minute=spec.sell_per_minute,
                description=spec.description,
                customer=customer,
                targets=targets,
            )

    # Money

    def load_payments(self) -> None:
        for spec in CUSTOMERS:
            if spec.topup is None:
                continue
            peer = self.customers[spec.name]
            account = Account.objects.get(peer=peer)
            reference = f"demo-topup-{slugify(peer.name)}"
            exists = LedgerEntry.objects.filter(account=account, kind="payment", reference=reference).exists()
            self.report.note("payments", not exists)
            if not exists:
                billing.post_payment(
                    account,
                    actor=self._actor_for(spec.owner),
                    amount=spec.topup,
                    reference=reference,
                    description="Demo top-up",
                )

    def load_bundles(self) -> None:
        """Alpha Telecom sells Northwind Trading 500 UK minutes a month: its demo calls to
        the UK are taken off the bundle before its money (docs/BUNDLES.md)."""
        reseller = Reseller.objects.get(name="Alpha Telecom")
        bundle = Bundle.objects.filter(reseller=reseller, name=DEMO_BUNDLE).first()
        self.report.note("bundles", bundle is None)
        if bundle is None:
            bundle = bundle_catalogue.create_bundle(
                actor=self._actor_for("Alpha Telecom"),
                name=DEMO_BUNDLE,
                kind=Bundle.Kind.MINUTES,
                minutes=500,
                prefixes="44",
                price=Decimal("10.00"),
            )
        account = Account.objects.get(peer=self.customers["Northwind Trading"])
        if not bundle.subscriptions.filter(account=account).exists():
            # From the first day of the month of the oldest demo call.
            first_call_day = (self.now - timedelta(days=30)).astimezone(account.zone).date()
            bundle_catalogue.subscribe(
                account,
                bundle,
                actor=self._actor_for("Alpha Telecom"),
                starts_on=first_call_day.replace(day=1),
            )

    # Calls

    def load_calls(self) -> None:
        existing = Cdr.objects.filter(call_id__startswith=CALL_ID_PREFIX).count()
        if existing or self.cdr_count <= 0:
            self.report.note("CDRs", False, existing)
            return
        maker = CallMaker(
            now=self.now, customers=self.customers, suppliers=list(self.suppliers.values()), nodes=self.nodes
        )
        calls = maker.make(self.cdr_count)
        # Written as OpenSIPS writes them, unpriced, and rated by the product's own rater:
        # both sides charged, exactly as a node's worker does it.
        for call in calls:
            call.rating_state, call.rated_at = Cdr.RatingState.UNRATED, None
            call.sell_cost = call.buy_cost = None
            call.billable_seconds = call.supplier_billable_seconds = 0
        _as_accounted(calls)
        Cdr.objects.bulk_create(calls, batch_size=500)
        # The rater adds them to the reports' traffic rollups as it rates them.
        rated = rating.rate_all(queryset=Cdr.objects.filter(call_id__startswith=CALL_ID_PREFIX))
        # Routing by quality and check routing show the last hour's statistics at once
        # (the worker refreshes them every few minutes after that).
        refresh_quality_stats(now=self.now)
        self.report.note("CDRs", True, len(calls))
        self.report.note("answered calls", True, sum(1 for c in calls if c.answered_at))
        self.report.note("call charges", True, rated.charges)

    def load_api_key(self) -> None:
        key = ApiKey.objects.usable().filter(name=API_KEY_NAME, scope=ApiKey.Scope.OPERATOR).first()
        self.report.note("API keys", key is None)
        if key is None:
            key, self.report.api_token = tenancy_services.create_api_key(
                actor=self.operator,
                name=API_KEY_NAME,
                scope=ApiKey.Scope.OPERATOR,
            )
        self.report.api_key = key


# SIP codes of calls that rang before they ended: they have a post-dial delay.
RANG = frozenset({200, 480, 486, 487})


def _as_accounted(calls: list[Cdr]) -> None:
    """Give the demo calls what OpenSIPS's accounting gives real ones and the reports read:
    the destination's name (longest prefix of the destination list, as the price lists
    name it) and, for calls that rang, a post-dial delay."""
    names = {d.prefix: d.name for d in load_destinations()}
    longest = max(map(len, names), default=0)
    rng = random.Random(f"{SEED}:pdd")
    for call in calls:
        number = call.callee
        call.destination = next(
            (names[number[:n]] for n in range(min(longest, len(number)), 0, -1) if number[:n] in names), ""
        )[: Cdr._meta.get_field("destination").max_length]
        call.pdd_ms = rng.randint(1200, 6500) if call.sip_code in RANG else None
