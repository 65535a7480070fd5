"""The demo cast: who the operator deals with, on which nodes, at what prices.

Fictitious companies; documentation addresses only (RFC 5737: 192.0.2.0/24,
198.51.100.0/24, 203.0.113.0/24); caller numbers from ranges reserved for drama and
fiction (Ofcom 020 7946 0xxx, 0113 496 0xxx, 07700 900xxx; NANP 555-01xx; ACMA
02 5550 xxxx, 0491 570 xxx; ARCEP 01 99 00 xx xx, 06 39 98 xx xx).
"""

from dataclasses import dataclass
from decimal import Decimal

from apps.billing.models import Account
from apps.routing.models import Method, QualityMetric

DEMO_PASSWORD = "demo-pass-2026"  # noqa: S105 - the documented password of every demo login
SEED = 2026
DEFAULT_CDRS = 1000
CDR_DAYS = 30
CALL_ID_PREFIX = "demo-"
API_KEY_NAME = "Demo operator key"


@dataclass(frozen=True)
class NodeSpec:
    name: str
    management_address: str
    sip_address: str
    public_hostname: str


@dataclass(frozen=True)
class ResellerSpec:
    name: str
    company: str
    email: str
    staff: str  # login name


@dataclass(frozen=True)
class GatewaySpec:
    name: str
    host: str
    port: int = 5060
    transport: str = "udp"
    priority: int = 0
    weight: int = 1
    prefix: str = ""
    probing: bool = True


@dataclass(frozen=True)
class SupplierSpec:
    name: str
    company: str
    table: str
    billing: str  # a policy of `increments()`
    price_factor: Decimal
    coverage: float  # share of the world's countries it terminates
    strong_in: tuple[str, ...]  # world zones (first digit) where it covers more and is cheaper
    gateways: tuple[GatewaySpec, ...]
    max_calls: int
    repriced_share: float = 0.0  # prefixes whose price rose in the last weeks


@dataclass(frozen=True)
class SellTableSpec:
    name: str
    owner: str | None  # reseller name; None is the operator
    billing: str
    margin: Decimal
    places: int = 4
    description: str = ""
    increase_share: float = 0.0  # prefixes with an announced price increase


@dataclass(frozen=True)
class CustomerSpec:
    name: str
    company: str
    owner: str | None
    table: str
    mode: str
    nodes: tuple[str, ...]
    callers: tuple[str, ...]  # number stems, completed with random digits to `caller_length`
    caller_length: int
    traffic: float  # share of the demo calls
    credit_limit: Decimal = Decimal(0)
    topup: Decimal | None = None
    login: str | None = None
    sip_domain: str = ""
    sip_users: tuple[str, ...] = ()
    sip_source_ip: str = ""
    endpoints: tuple[tuple[str, int, str], ...] = ()  # (ip, mask, description)
    rewrites: tuple[tuple[str, str], ...] = ()  # callee (pattern, replacement) at ingress
    max_calls: int | None = None
    max_cps: int | None = None
    favourite_countries: tuple[str, ...] = ()


NODES = (
    NodeSpec("node1", "192.0.2.11", "198.51.100.11", "node1.demo.example.net"),
    NodeSpec("node2", "192.0.2.12", "198.51.100.12", "node2.demo.example.net"),
    NodeSpec("node3", "192.0.2.13", "198.51.100.13", "node3.demo.example.net"),
)

RESELLERS = (
    ResellerSpec("Alpha Telecom", "Alpha Telecom Ltd", "noc@alpha.example.com", "alpha"),
    ResellerSpec("Beta Voice", "Beta Voice LLC", "support@beta.example.org", "beta"),
)

SUPPLIERS = (
    SupplierSpec(
        name="Atlas Carrier",
        company="Atlas Carrier Services",
        table="Atlas Carrier buy",
        billing="per-second",
        price_factor=Decimal("1.06"),  # dear but complete: the route of last resort
        coverage=1.0,
        strong_in=(),
        max_calls=2000,
        gateways=(
            GatewaySpec("atlas-primary", "203.0.113.10"),
            GatewaySpec("atlas-secondary", "203.0.113.11", priority=1),
            GatewaySpec("atlas-tls", "203.0.113.12", port=5061, transport="tls", priority=2),
        ),
    ),
    SupplierSpec(
        name="Boreal Telecom",
        company="Boreal Telecom AS",
        table="Boreal Telecom buy",
        billing="carrier",
        price_factor=Decimal("0.93"),
        coverage=0.7,
        strong_in=("3", "4"),  # Europe
        max_calls=600,
        repriced_share=0.04,
        gateways=(
            GatewaySpec("boreal-a", "203.0.113.40", weight=2),
            GatewaySpec("boreal-b", "203.0.113.41", weight=1),
        ),
    ),
    SupplierSpec(
        name="Cobalt Networks",
        company="Cobalt Networks Pte",
        table="Cobalt Networks buy",
        billing="carrier",
        price_factor=Decimal("0.98"),
        coverage=0.45,
        strong_in=("2", "6", "8", "9"),  # Africa, Asia-Pacific, the Middle East
        max_calls=300,
        gateways=(GatewaySpec("cobalt-sg", "203.0.113.70", prefix="0077"),),
    ),
)

SELL_TABLES = (
    SellTableSpec(
        name="Wholesale Standard",
        owner=None,
        billing="wholesale",
        margin=Decimal("0.12"),
        description="The operator's A-Z for direct wholesale customers.",
    ),
    SellTableSpec(
        name="Alpha Retail",
        owner="Alpha Telecom",
        billing="retail",
        margin=Decimal("0.35"),
        places=3,
        description="Per-minute retail prices of Alpha Telecom.",
        increase_share=0.01,
    ),
    SellTableSpec(
        name="Beta Business",
        owner="Beta Voice",
        billing="business",
        margin=Decimal("0.28"),
        description="Beta Voice's business price list.",
    ),
)

PREPAID, POSTPAID = Account.Mode.PREPAID, Account.Mode.POSTPAID

CUSTOMERS = (
    # An office on SIP phones, prepaid, with a portal login.
    CustomerSpec(
        name="Northwind Trading",
        company="Northwind Trading Ltd",
        owner="Alpha Telecom",
        table="Alpha Retail",
        mode=PREPAID,
        nodes=("node1",),
        callers=("442079460",),
        caller_length=12,
        traffic=0.12,
        topup=Decimal("250"),
        login="alpha-cust1",
        sip_domain="alpha.sip.example.net",
        sip_users=("northwind-100", "northwind-101", "northwind-102"),
        sip_source_ip="203.0.113.201",
        max_calls=10,
        favourite_countries=("United Kingdom", "India"),
    ),
    # A PBX cluster authenticated by its network, on credit.
    CustomerSpec(
        name="Harbor Medical Group",
        company="Harbor Medical Group plc",
        owner="Alpha Telecom",
        table="Alpha Retail",
        mode=POSTPAID,
        nodes=("node1", "node2"),
        callers=("441134960", "447700900"),
        caller_length=12,
        traffic=0.14,
        credit_limit=Decimal("1500"),
        login="alpha-cust2",
        endpoints=(("192.0.2.64", 29, "Harbor PBX cluster"),),
        max_calls=30,
        max_cps=5,
        favourite_countries=("United Kingdom", "Ireland", "Spain"),
    ),
    # A small US office dialling 011 for international calls.
    CustomerSpec(
        name="Summit Realty",
        company="Summit Realty Inc",
        owner="Beta Voice",
        table="Beta Business",
        mode=PREPAID,
        nodes=("node2",),
        callers=("121255501", "131255501"),
        caller_length=11,
        traffic=0.12,
        topup=Decimal("300"),
        login="beta-cust1",
        sip_domain="beta.sip.example.net",
        sip_users=("summit-office", "summit-sales"),
        sip_source_ip="203.0.113.202",
        rewrites=((r"^011(\d+)$", r"\1"),),
        max_calls=8,
        favourite_countries=("United States", "Canada", "Mexico"),
    ),
    # A dialer farm: many calls, two source networks, no portal login.
    CustomerSpec(
        name="Lakeside Call Center",
        company="Lakeside Call Center LLC",
        owner="Beta Voice",
        table="Beta Business",
        mode=POSTPAID,
        nodes=("node2", "node3"),
        callers=("161755501", "141555501"),
        caller_length=11,
        traffic=0.22,
        credit_limit=Decimal("3000"),
        endpoints=(("198.51.100.64", 28, "Dialer farm"), ("198.51.100.80", 32, "Backup dialer")),
        max_calls=120,
        max_cps=10,
        favourite_countries=("United States", "Philippines", "Canada"),
    ),
    # A wholesale carrier sending 00-prefixed numbers from two SBCs.
    CustomerSpec(
        name="Orion Wholesale",
        company="Orion Wholesale Telecom SA",
        owner=None,
        table="Wholesale Standard",
        mode=POSTPAID,
        nodes=("node1", "node2", "node3"),
        callers=("6125550", "61491570", "3319900"),
        caller_length=11,
        traffic=0.28,
        credit_limit=Decimal("10000"),
        login="orion-noc",
        endpoints=(("198.51.100.200", 32, "Orion SBC 1"), ("198.51.100.201", 32, "Orion SBC 2")),
        rewrites=((r"^00(\d+)$", r"\1"),),
        max_calls=500,
        max_cps=50,
        favourite_countries=("Nigeria", "Pakistan", "Bangladesh", "Mexico", "India"),
    ),
    # A VoIP provider with a SIP trunk and an office address.
    CustomerSpec(
        name="Pioneer VoIP",
        company="Pioneer VoIP SARL",
        owner=None,
        table="Wholesale Standard",
        mode=PREPAID,
        nodes=("node3",),
        callers=("3319900", "3363998"),
        caller_length=11,
        traffic=0.12,
        topup=Decimal("400"),
        sip_domain="sip.pioneer.example.org",
        sip_users=("pioneer-trunk",),
        sip_source_ip="203.0.113.203",
        endpoints=(("192.0.2.130", 32, "Pioneer office"),),
        max_calls=20,
        favourite_countries=("France", "Morocco", "Algeria", "Senegal"),
    ),
)


@dataclass(frozen=True)
class DidSpec:
    number: str
    supplier: str  # a SUPPLIERS name
    buy_monthly: Decimal
    buy_per_minute: Decimal
    sell_monthly: Decimal
    sell_per_minute: Decimal
    last_number: str = ""
    customer: str | None = None  # a CUSTOMERS name; None: in stock
    targets: tuple[str, ...] = ()  # the customer's SIP user names, in the order tried
    description: str = ""


# Ofcom's drama range again: 020 7946 0000 rings Northwind's reception, a block of a
# hundred waits in stock.
DIDS = (
    DidSpec(
        number="442079460000",
        supplier="Atlas Carrier",
        buy_monthly=Decimal("1.00"),
        buy_per_minute=Decimal("0.0020"),
        sell_monthly=Decimal("4.00"),
        sell_per_minute=Decimal("0.0100"),
        customer="Northwind Trading",
        targets=("northwind-100", "northwind-101"),
        description="Northwind's main number.",
    ),
    DidSpec(
        number="442079460100",
        last_number="442079460199",
        supplier="Boreal Telecom",
        buy_monthly=Decimal("15.00"),
        buy_per_minute=Decimal("0.0015"),
        sell_monthly=Decimal("40.00"),
        sell_per_minute=Decimal("0.0080"),
        description="A block of 100 London numbers for the next PBX customer.",
    ),
)


@dataclass(frozen=True)
class RouteSpec:
    supplier: str  # a SUPPLIERS name
    priority: int = 0
    weight: int = 1
    setup_timeout: int | None = None
    stop_hunting: bool = False


@dataclass(frozen=True)
class RuleSpec:
    prefix: str
    method: str
    description: str
    routes: tuple[RouteSpec, ...] = ()
    quality_metric: str = QualityMetric.ASR
    quality_tolerance: int = 5


@dataclass(frozen=True)
class PlanSpec:
    name: str
    description: str
    rules: tuple[RuleSpec, ...]
    parent: str | None = None  # a plan listed before this one
    cluster_default: bool = False
    resellers: tuple[str, ...] = ()  # whose customers route by this plan


ATLAS, BOREAL, COBALT = (RouteSpec(s.name) for s in SUPPLIERS)

ROUTING_PLANS = (
    PlanSpec(
        name="Standard",
        description="Every customer's routing unless its reseller or itself has another plan.",
        cluster_default=True,
        rules=(
            RuleSpec("", Method.LEAST_COST, "Cheapest supplier with a rate first.", (ATLAS, BOREAL, COBALT)),
            RuleSpec(
                "447",
                Method.QUALITY,
                "UK mobiles: best answer rate first; suppliers within 5 points of each other by price.",
                (ATLAS, BOREAL, COBALT),
                quality_metric=QualityMetric.ASR,
                quality_tolerance=5,
            ),
            RuleSpec(
                "49",
                Method.WEIGHT,
                "Germany: 70/30 split of first attempts between Boreal and Atlas.",
                (RouteSpec("Boreal Telecom", weight=70), RouteSpec("Atlas Carrier", weight=30)),
            ),
            RuleSpec(
                "234",
                Method.PRIORITY,
                "Nigeria: Cobalt first (8 s to ring), then Atlas.",
                (
                    RouteSpec("Cobalt Networks", priority=0, setup_timeout=8),
                    RouteSpec("Atlas Carrier", priority=1),
                ),
            ),
            RuleSpec("881", Method.BLOCK, "Satellite phones (Iridium, Globalstar): six dollars a minute."),
            RuleSpec("882", Method.BLOCK, "International networks: premium-rate satellite and maritime."),
        ),
    ),
    PlanSpec(
        name="Premium",
        description="Standard, with the best-quality supplier first where it matters.",
        parent="Standard",
        resellers=("Alpha Telecom",),
        rules=(
            RuleSpec(
                "44",
                Method.PRIORITY,
                "UK calls: Atlas first, Boreal only if Atlas fails.",
                (RouteSpec("Atlas Carrier", priority=0), RouteSpec("Boreal Telecom", priority=1)),
            ),
            RuleSpec(
                "91",
                Method.QUALITY,
                "India: the longest average call first; within 10 seconds by price.",
                (COBALT, ATLAS),
                quality_metric=QualityMetric.ACD,
                quality_tolerance=10,
            ),
        ),
    ),
)

# How often each world region is called, before a customer's own favourites.
POPULAR_COUNTRIES = {
    "United States": 30,
    "United Kingdom": 12,
    "India": 12,
    "Mexico": 8,
    "Philippines": 8,
    "Canada": 6,
    "Germany": 6,
    "France": 6,
    "Nigeria": 6,
    "China": 5,
    "Pakistan": 5,
    "Brazil": 4,
    "Bangladesh": 3,
    "Spain": 3,
    "Italy": 3,
    "Poland": 2,
    "Colombia": 2,
    "Vietnam": 2,
    "Indonesia": 2,
    "Dominican Republic": 2,
    "Australia": 2,
    "Kenya": 2,
}

# Final responses of failed attempts, with their share of the failures.
FAILURES = (
    (486, "Busy Here", 30),
    (487, "Request Terminated", 28),
    (480, "Temporarily Unavailable", 15),
    (404, "Not Found", 10),
    (503, "Service Unavailable", 10),
    (403, "Forbidden", 7),
)
ANSWERED_SHARE = 0.6


# Fraud and quality controllers (docs/FRAUD.md): a starting set an operator would keep,
# most of them warning only, so that a person decides what acts on its own. The owner is a
# reseller's name, or None for the operator.
@dataclass(frozen=True)
class ControllerSpec:
    name: str
    kind: str
    settings: dict
    owner: str | None = None


CONTROLLERS = (
    ControllerSpec(
        "Supplier ASR under 15 %",
        "termination",
        {
            "metric": "asr",
            "threshold": Decimal(15),
            "min_count": 100,
            "window_minutes": 30,
            "action": "block",
            "block_minutes": 30,
            "trial_share": 20,
            "trial_minutes": 30,
        },
    ),
    ControllerSpec(
        "False answer supervision",
        "termination",
        {
            "metric": "fas",
            "threshold": Decimal(30),
            "min_count": 50,
            "window_minutes": 60,
            "short_seconds": 6,
        },
    ),
    ControllerSpec(
        "Calls ten times the usual",
        "burst",
        {"metric": "calls", "threshold": Decimal(10), "floor": Decimal(100), "window_minutes": 5},
    ),
    ControllerSpec(
        "Spend ten times the usual",
        "burst",
        {"metric": "spend", "threshold": Decimal(10), "floor": Decimal(50), "window_minutes": 60},
    ),
    ControllerSpec(
        "New destination at 1.00/min or more",
        "new_destination",
        {"threshold": Decimal(1), "min_count": 5, "window_minutes": 60, "baseline_days": 30},
    ),
    ControllerSpec(
        "Sequential short calls",
        "sequential",
        {"min_count": 20, "short_seconds": 6, "window_minutes": 10},
    ),
    ControllerSpec(
        "Same number 30 times in 10 minutes",
        "repeated_number",
        {"metric": "callee", "min_count": 30, "window_minutes": 10, "action": "block", "block_minutes": 60},
    ),
    ControllerSpec(
        "SIP brute force",
        "sip_auth",
        {"min_count": 20, "window_minutes": 10, "account_limit": 50, "action": "block", "block_minutes": 60},
    ),
    ControllerSpec(
        "Login lockout",
        "login",
        {"min_count": 10, "window_minutes": 15, "action": "block", "block_minutes": 15},
    ),
    ControllerSpec(
        "Alpha: calls ten times the usual",
        "burst",
        {"metric": "calls", "threshold": Decimal(10), "floor": Decimal(50), "window_minutes": 5},
        owner="Alpha Telecom",
    ),
)
