"""A month of demo call attempts, rated on both sides with the stored price lists."""

import random
from collections import defaultdict
from datetime import datetime, timedelta

from apps.cdr.models import Cdr
from apps.core.demo.cast import (
    ANSWERED_SHARE,
    CALL_ID_PREFIX,
    CDR_DAYS,
    CUSTOMERS,
    FAILURES,
    POPULAR_COUNTRIES,
    SEED,
    CustomerSpec,
)
from apps.core.demo.prices import Destination, RateIndex, load_destinations
from apps.core.money import money
from apps.peers.models import Gateway, Peer
from apps.rates.tariffs import Tariff, call_cost

# Seconds from INVITE to the final response of failed attempts, by SIP code.
SETUP_MS = {487: (4000, 30000), 480: (10000, 40000), 486: (800, 5000)}
QUICK_FAILURE_MS = (100, 3000)
# Calls started in the last hour (routing quality has data at once), ended this long ago.
RECENT_SHARE = 0.05
ENDED_BEFORE_NOW = timedelta(minutes=2)


class CallMaker:
    """Make CDRs as OpenSIPS and the rater would leave them: priced, rated, not yet saved.

    `customers` maps CUSTOMERS names to peers, `suppliers` lists the supplier peers and
    `nodes` maps node names to nodes. Each call's prices are the longest-prefix rates in
    force at the INVITE, looked up in the stored tables; the route is the cheapest
    supplier most of the time.
    """

    def __init__(
        self, *, now: datetime, customers: dict[str, Peer], suppliers: list[Peer], nodes: dict
    ) -> None:
        self.now = now
        self.customers = customers
        self.suppliers = suppliers
        self.nodes = nodes
        self.rng = random.Random(f"{SEED}:calls")
        # Start times depend on today's date; their own generator keeps everything else
        # (numbers, durations, outcomes) the same whatever day the demo is loaded.
        self.clock = random.Random(f"{SEED}:clock")
        self.by_country: dict[str, list[Destination]] = defaultdict(list)
        for destination in load_destinations():
            self.by_country[destination.country].append(destination)
        self.countries = sorted(self.by_country)
        self.gateways = {
            peer.pk: list(Gateway.objects.filter(peer=peer).order_by("priority", "name"))
            for peer in suppliers
        }
        tables = [peer.buy_rate_table_id for peer in suppliers]
        tables += [peer.sell_rate_table_id for peer in customers.values()]
        self.index = RateIndex(tables)

    def make(self, count: int) -> list[Cdr]:
        weights = [spec.traffic for spec in CUSTOMERS]
        return [self._call(n, self.rng.choices(CUSTOMERS, weights)[0]) for n in range(1, count + 1)]

    def _moment(self) -> datetime:
        """A start in the last month, busier in working hours and on weekdays.

        A few calls are from the last hour, ended by now, so that the routing quality
        statistics (computed over the last hour by default) have data on a fresh demo.
        """
        clock = self.clock
        if clock.random() < RECENT_SHARE:
            return self.now - timedelta(seconds=clock.randint(20 * 60, 55 * 60))
        while True:
            moment = self.now - timedelta(seconds=clock.randint(2 * 3600, CDR_DAYS * 86400))
            busy = 1.0 if 8 <= moment.hour < 19 else 0.25
            if moment.weekday() >= 5:
                busy *= 0.4
            if clock.random() < busy:
                return moment

    def _callee(self, spec: CustomerSpec) -> str:
        rng = self.rng
        weights = [
            POPULAR_COUNTRIES.get(country, 0.4) * (6 if country in spec.favourite_countries else 1)
            for country in self.countries
        ]
        destination = rng.choice(self.by_country[rng.choices(self.countries, weights)[0]])
        nanp = destination.prefix.startswith("1")
        digits = list(destination.prefix)
        while len(digits) < destination.number_length:
            position = len(digits)
            if nanp:
                # NANP area codes and exchange codes start with 2-9.
                low = 2 if position in (1, 4) else 0
            else:
                # The first digit after a country code is never the national trunk 0.
                low = 1 if position == len(destination.prefix) and position <= 3 else 0
            digits.append(str(rng.randint(low, 9)))
        return "".join(digits)

    def _caller(self, spec: CustomerSpec) -> str:
        stem = self.rng.choice(spec.callers)
        return stem + "".join(str(self.rng.randint(0, 9)) for _ in range(spec.caller_length - len(stem)))

    def _source_ip(self, spec: CustomerSpec) -> str:
        if spec.sip_source_ip:
            return spec.sip_source_ip
        ip, mask, _ = self.rng.choice(spec.endpoints)
        if mask == 32:
            return ip
        network, last = ip.rsplit(".", 1)
        return f"{network}.{int(last) + self.rng.randint(1, 2 ** (32 - mask) - 2)}"

    def _route(self, callee: str, moment: datetime, sell: Tariff) -> tuple[Peer, Tariff]:
        """The least-cost supplier; now and then the next one, as when the cheapest was busy.

        Suppliers dearer per minute than the customer's price are left out (no loss routing).
        """
        offers = []
        for peer in self.suppliers:
            tariff = self.index.tariff(peer.buy_rate_table_id, callee, moment)
            if tariff is not None and tariff.price <= sell.price:
                offers.append((tariff.price, peer.name, peer, tariff))
        if not offers:
            raise RuntimeError(f"No supplier terminates {callee} below its sell price.")
        offers.sort(key=lambda offer: offer[:2])
        pick = min(len(offers) - 1, self.rng.choices((0, 1, 2), (80, 15, 5))[0])
        return offers[pick][2], offers[pick][3]

    def _duration_ms(self) -> int:
        rng = self.rng
        if rng.random() < 0.15:  # voicemail, wrong numbers, dropped calls
            seconds = rng.randint(1, 15)
        else:  # a median of about a minute and a half, a long tail
            seconds = min(int(rng.lognormvariate(4.5, 0.9)) + 1, 3600)
        return rng.randint((seconds - 1) * 1000 + 1, seconds * 1000)

    def _call(self, number: int, spec: CustomerSpec) -> Cdr:
        rng = self.rng
        customer = self.customers[spec.name]
        created = self._moment()
        callee = self._callee(spec)
        source_ip = self._source_ip(spec)
        sell = self.index.tariff(customer.sell_rate_table_id, callee, created)
        if sell is None:
            raise RuntimeError(
                f"{spec.table} has no price for {callee}; the demo price lists are incomplete."
            )
        supplier, buy = self._route(callee, created, sell)
        code, reason = 200, "OK"
        if rng.random() >= ANSWERED_SHARE:
            code, reason, _ = rng.choices(FAILURES, [share for *_, share in FAILURES])[0]
        if code == 403:  # refused by the switch itself: no supplier was tried
            supplier = buy = None
        gateway = None
        if supplier is not None:
            gateways = self.gateways[supplier.pk]
            gateway = gateways[0] if len(gateways) == 1 or rng.random() < 0.85 else rng.choice(gateways[1:])
        cdr = Cdr(
            call_id=f"{CALL_ID_PREFIX}{number:06d}-{rng.getrandbits(48):012x}@{source_ip}",
            from_tag=f"{rng.getrandbits(32):08x}",
            to_tag=f"{rng.getrandbits(32):08x}",
            node=self.nodes[rng.choice(spec.nodes)],
            customer=customer,
            supplier=supplier,
            gateway=gateway,
            source_ip=source_ip,
            caller=self._caller(spec),
            callee=callee,
            callee_out=gateway.prefix + callee[gateway.strip_digits :] if gateway else "",
            created_at=created,
            sip_code=code,
            sip_reason=reason,
            rating_state=Cdr.RatingState.RATED,
        )
        if code == 200:
            cdr.answered_at = created + timedelta(milliseconds=rng.randint(1500, 12000))
            # Ended, and rated, before now.
            room_ms = (self.now - ENDED_BEFORE_NOW - cdr.answered_at) // timedelta(milliseconds=1)
            cdr.duration_ms = min(self._duration_ms(), room_ms)
            cdr.ended_at = cdr.answered_at + timedelta(milliseconds=cdr.duration_ms)
        else:
            cdr.ended_at = created + timedelta(
                milliseconds=rng.randint(*SETUP_MS.get(code, QUICK_FAILURE_MS))
            )
        cdr.billable_seconds, cdr.sell_cost = call_cost(sell, cdr.duration_ms)
        if buy is None:
            cdr.buy_cost = money(0)
        else:
            cdr.supplier_billable_seconds, cdr.buy_cost = call_cost(buy, cdr.duration_ms)
        cdr.rated_at = cdr.ended_at + timedelta(seconds=rng.randint(1, 30))
        cdr.clean()  # the model's invariants, without the queries of full_clean()
        return cdr
