"""FreeSWITCH on a node under load: how many recorded calls at once, what each costs in CPU and
disk, and what capturing a call's SIP messages costs.

Builds bench/call_path.py's world in a database of its own (default
mysql://root@127.0.0.1:3306/smartswitch_bench_media, dropped at the end unless --keep): node
"bench1" on 127.0.0.1, now also running FreeSWITCH, one supplier (SIPp uas on
bench/scenarios/uas_answer.xml with -rtp_echo: PCMU, the caller's audio sent back) and four
prepaid customers sending 49 to it:

| source | record_calls | capture_calls | used by |
|---|---|---|---|
| 127.0.0.10 | yes | no | part 1; part 2 "media, capture off" |
| 127.0.0.11 | yes | yes | part 2 "media, capture on" |
| 127.0.0.12 | no | no | part 2 "signalling, capture off" |
| 127.0.0.13 | no | yes | part 2 "signalling, capture on" |

It starts, all on 127.0.0.1: OpenSIPS on the cfg the product renders
(apps.opensips.config.render, with the HEP socket of call capture), call control under
uvicorn, FreeSWITCH on its rendered configuration (apps.media.config.render, through
tests/media/test_live_freeswitch.py's FreeSwitch), the node's `manage.py freeswitch_events`
(it registers each recording with the file sync) and `manage.py capture_listener`. No
billing worker: the calls' money is bench/call_path.py's subject.

**Part 1, recorded calls** (--calls, e.g. 25,50,100,200): per step SIPp
(bench/scenarios/uac_rtp_call.xml) places that many calls at --ramp calls/s, each playing a
u-law 440 Hz tone (made by sox) from the answer until its BYE --hold seconds later, so that
all of them are up at once for a while. Each call goes customer → OpenSIPS → FreeSWITCH
(recording both sides, stereo) → OpenSIPS → supplier, whose echo comes back the same way.
Per step:

- completed %: SIPp's successful calls / calls placed; set-up time p50/p99 (INVITE → 200);
- CPU seconds of each process tree over the step (/proc/<pid>/stat: FreeSWITCH, OpenSIPS,
  uvicorn, freeswitch_events; SIPp both sides), and FreeSWITCH's and the node's (all but
  SIPp) CPU ms per recorded call-minute;
- while every call is up (from --ramp's last call + 3 s to the first call's end): the cores
  FreeSWITCH keeps busy and how busy the whole machine is (/proc/stat);
- audio quality from FreeSWITCH's own RTP statistics, the channel variables it sets at
  hangup (switch_core_media.c set_stats) as CHANNEL_HANGUP_COMPLETE carries them:
  rtp_audio_in_mos (1.0-4.5, from in_quality_percentage = received packets less "flaws":
  gaps in sequence and late packets), rtp_audio_in_flaw_total, rtp_audio_in_skip_packet_count
  and rtp_audio_in_media_packet_count against the 50 packets/s a 20 ms stream sends, for
  the caller's leg (A: the tone from SIPp) and the supplier's (B: its echo);
- the recordings: one WAV per answered call, "whole" when sox's length is --hold ± 1 s and
  both channels carry sound (RMS amplitude > 0.01: caller left, callee right), the bytes
  per recorded minute, and how many the listener registered (apps.files).

The node gives out where calls fail, set-up times grow, MOS falls or packets go missing,
or the machine runs out of CPU. SIPp (both sides, and their RTP) runs on the same machine
and takes its share: on a small machine the generator gives out with the node.

**Part 2, call capture** (--capture-rate calls/s for --capture-duration s, each held
--capture-hold s): four steps, signalling-only calls (uac_call.xml) and calls through
FreeSWITCH (recorded, with RTP), each with capture off and on. Per step: completed %,
OpenSIPS's CPU ms per call (on vs off: the tracer's cost), the capture listener's CPU ms per
captured call, and the pcaps written for the step's calls (count, bytes per call).

    .venv/bin/python bench/media.py --calls 25,50,100,200 --hold 60
    .venv/bin/python bench/media.py --parts capture --capture-rate 20 --capture-duration 20

Skips (exit 0, saying why) without OpenSIPS, SIPp, FreeSWITCH (FREESWITCH_BIN, else
`freeswitch` on PATH) or sox. Every process it starts is stopped on exit, on Ctrl-C and on
errors; traffic stays on loopback. Nothing here changes product code.
"""

import argparse
import contextlib
import csv
import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench import call_path  # noqa: E402 - after the repository is on sys.path
from bench.call_path import (  # noqa: E402
    LOOPBACK,
    NODE,
    Processes,
    active_dialogs,
    answers_http,
    answers_mi,
    cpu_sample,
    free_port,
    sipp_errors,
    wait_ready,
)
from bench.common import create_database, describe_machine, drop_database, integers, percentile  # noqa: E402

DEFAULT_URL = "mysql://root@127.0.0.1:3306/smartswitch_bench_media"
SCENARIOS = Path(__file__).resolve().parent / "scenarios"
CALLEE = call_path.CALLEE
PACKETS_PER_SECOND = 50  # a 20 ms PCMU stream
WHOLE_TOLERANCE = 1.0  # seconds a recording may differ from the call
SILENCE_RMS = 0.01
SETTLE_SECONDS = 60  # the longest wait for FreeSWITCH and OpenSIPS to drop a step's calls


@dataclass(frozen=True)
class Caller:
    ip: str
    record: bool
    capture: bool


RECORDED = Caller("127.0.0.10", record=True, capture=False)  # bench/call_path.py's customer
CALLERS = {
    "recorded": RECORDED,
    "recorded+captured": Caller("127.0.0.11", record=True, capture=True),
    "plain": Caller("127.0.0.12", record=False, capture=False),
    "captured": Caller("127.0.0.13", record=False, capture=True),
}
# Part 2's steps: (calls, capture) -> the caller that makes them so.
CAPTURE_STEPS = (
    ("signalling", False, "plain"),
    ("signalling", True, "captured"),
    ("media", False, "recorded"),
    ("media", True, "recorded+captured"),
)
RUNNING: list[subprocess.Popen] = []  # SIPp customers while they run, for the cleanup


def skip(reason: str) -> None:
    print(f"media: skipped: {reason}", flush=True)
    raise SystemExit(0)


def find_freeswitch() -> tuple[str, str]:
    """(freeswitch binary, sox); exits 0 saying why when one is missing."""
    binary = os.environ.get("FREESWITCH_BIN") or shutil.which("freeswitch")
    if not binary or not Path(binary).is_file():
        skip("no FreeSWITCH: set FREESWITCH_BIN or put `freeswitch` on PATH (deploy/freeswitch/README.md).")
    os.environ["FREESWITCH_BIN"] = binary  # what tests/media/test_live_freeswitch.py starts
    sox = shutil.which("sox")
    if sox is None:
        skip("no sox (Debian package sox): it makes the callers' tone and measures the recordings.")
    return binary, sox


# --- the world --------------------------------------------------------------------------------


def build_media_world(ports: dict[str, int], esl_password: str) -> dict:
    """bench/call_path.py's world, its node running FreeSWITCH, and the four customers."""
    from apps.billing.services.ledger import post_payment
    from apps.nodes.models import Node
    from apps.peers import services as peer_services
    from apps.peers.models import Peer
    from apps.tenancy.scope import Scope

    system = Scope.system()
    world = call_path.build_world(ports)
    Node.objects.filter(name=NODE).update(
        media_enabled=True, media_port=ports["media"], esl_port=ports["esl"], esl_password=esl_password
    )
    world["node"] = Node.objects.get(name=NODE)
    sell = world["customer"].sell_rate_table_id
    peers = {"recorded": world["customer"]}
    for name, caller in CALLERS.items():
        if name not in peers:
            peers[name] = peer_services.create_peer(
                actor=system, name=f"Bench {name}", role=Peer.Role.CUSTOMER, sell_rate_table_id=sell
            )
            peer_services.add_endpoint(peers[name], actor=system, ip=caller.ip)
            post_payment(peers[name].account, actor=system, amount=call_path.BALANCE, reference="bench-topup")
        # Before call control starts: its snapshot reads them once.
        Peer.objects.filter(pk=peers[name].pk).update(
            record_calls=caller.record, capture_calls=caller.capture
        )
    return world


def make_tone(sox: str, path: Path) -> None:
    """Ten seconds of a 440 Hz tone, u-law 8 kHz: what SIPp's rtp_stream plays, looped, as PCMU."""
    subprocess.run(
        [sox, "-n", "-r", "8000", "-c", "1", "-e", "u-law", str(path), "synth", "10", "sine", "440"],
        check=True,
    )


# --- FreeSWITCH's RTP statistics --------------------------------------------------------------


class HangupStats:
    """Every CHANNEL_HANGUP_COMPLETE of FreeSWITCH, kept with its RTP statistics."""

    def __init__(self, node, password: str) -> None:
        from engines.freeswitch.events import EventListener

        self.events: list[dict[str, str]] = []
        self.listener = EventListener(
            LOOPBACK,
            node.esl_port,
            password,
            on_event=self._keep,
            events=("CHANNEL_HANGUP_COMPLETE",),
            custom=(),
        )
        self.thread = threading.Thread(target=self.listener.run, name="hangup-stats", daemon=True)

    def _keep(self, event) -> None:
        self.events.append(
            {
                "direction": event.direction,
                "cause": event.hangup_cause,
                **{
                    name: event.variable(f"rtp_audio_in_{name}")
                    for name in (
                        "mos",
                        "quality_percentage",
                        "flaw_total",
                        "skip_packet_count",
                        "media_packet_count",
                    )
                },
                "billsec": event.variable("billsec"),
            }
        )

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.listener.connections and time.monotonic() < deadline:
            time.sleep(0.1)
        if not self.listener.connections:
            raise SystemExit("could not subscribe to FreeSWITCH's events over ESL")

    def stop(self) -> None:
        self.listener.stop()
        self.thread.join(timeout=5)


def _number(value: str) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def quality(events: list[dict[str, str]], hold: float) -> dict:
    """Per leg (A: inbound from the caller, B: outbound to the supplier): MOS min/mean, flaws,
    skipped packets, and the packets received against what `hold` seconds of audio are."""
    result = {}
    for leg, direction in (("A", "inbound"), ("B", "outbound")):
        rows = [e for e in events if e["direction"] == direction and _number(e["mos"]) is not None]
        mos = [_number(e["mos"]) for e in rows]
        received = sum(_number(e["media_packet_count"]) or 0 for e in rows)
        expected = sum((_number(e["billsec"]) or hold) * PACKETS_PER_SECOND for e in rows)
        result[leg] = {
            "channels": len(rows),
            "mos_min": min(mos, default=float("nan")),
            "mos_mean": sum(mos) / len(mos) if mos else float("nan"),
            "below_4": sum(m < 4.0 for m in mos),
            "flaws": sum(_number(e["flaw_total"]) or 0 for e in rows),
            "skipped": sum(_number(e["skip_packet_count"]) or 0 for e in rows),
            "received_share": received / expected if expected else float("nan"),
        }
    causes: dict[str, int] = {}
    for event in events:
        causes[event["cause"]] = causes.get(event["cause"], 0) + 1
    result["causes"] = causes
    return result


# --- recordings -------------------------------------------------------------------------------


def sox_stat(sox: str, path: Path, channel: int) -> dict[str, float]:
    """sox's `stat` of one channel of a WAV: its length in seconds and RMS amplitude, among others."""
    result = subprocess.run(
        [sox, str(path), "-n", "remix", str(channel), "stat"], capture_output=True, text=True, check=False
    )
    values = {}
    for line in result.stderr.splitlines():
        name, _, value = line.partition(":")
        with contextlib.suppress(ValueError):
            values[" ".join(name.split())] = float(value)
    return values


def recordings(sox: str, root: Path, prefix: str, hold: float) -> dict:
    """The step's WAVs (named after the call's Call-ID): how many, how many whole, bytes per minute."""
    paths = [Path(p) for p in glob.glob(str(root / "**" / f"{prefix}*.wav"), recursive=True)]
    whole, seconds, size, short, silent = 0, 0.0, 0, 0, 0
    for path in paths:
        left, right = sox_stat(sox, path, 1), sox_stat(sox, path, 2)
        length = left.get("Length (seconds)", 0.0)
        seconds += length
        size += path.stat().st_size
        sound = min(left.get("RMS amplitude", 0.0), right.get("RMS amplitude", 0.0)) > SILENCE_RMS
        long_enough = abs(length - hold) <= WHOLE_TOLERANCE
        whole += sound and long_enough
        short += not long_enough
        silent += not sound
    return {
        "files": len(paths),
        "whole": whole,
        "short": short,
        "silent": silent,
        "minutes": seconds / 60,
        "bytes": size,
        "bytes_per_minute": size / (seconds / 60) if seconds else float("nan"),
        "paths": paths,
    }


def registered(kind: str, prefix: str, expected: int, timeout: float = 30) -> int:
    """How many of the step's files the listeners registered with apps.files (waited for, bounded)."""
    from apps.files.models import StoredFile

    deadline = time.monotonic() + timeout
    while True:
        count = StoredFile.objects.filter(kind=kind, call_id__startswith=prefix).count()
        if count >= expected or time.monotonic() > deadline:
            return count
        time.sleep(0.5)


# --- SIPp -------------------------------------------------------------------------------------


@dataclass
class Customer:
    """A SIPp customer running in the background."""

    process: subprocess.Popen
    step_dir: Path
    calls: int
    bound: float
    started: float = field(default_factory=time.monotonic)


def start_customer(
    sipp: str, step_dir: Path, *, scenario: Path, caller: Caller, calls: int, rate: float, hold: float,
    prefix: str, sip_port: int,
) -> Customer:  # fmt: skip
    """SIPp placing `calls` calls at `rate` calls/s, each held `hold` s; never limited by -l.
    -aa answers OpenSIPS's in-dialog OPTIONS pings (OPENSIPS_PING_INTERVAL) during the hold."""
    step_dir.mkdir(parents=True)
    shutil.copy(scenario, step_dir / "uac.xml")
    bound = calls / rate + hold + 60
    command = [
        "timeout", "-k", "5", str(int(bound + 10)), sipp, f"{LOOPBACK}:{sip_port}",
        "-sf", "uac.xml", "-i", caller.ip, "-p", str(free_port()), "-mp", str(free_port()),
        "-s", CALLEE, "-r", str(rate), "-m", str(calls), "-l", str(calls + 10),
        "-d", str(int(hold * 1000)), "-aa", "-nostdin", "-buff_size", "4194304",
        "-recv_timeout", "10000", "-timeout", str(int(bound)), "-cid_str", f"{prefix}%u-%p@bench",
        "-trace_rtt", "-rtt_freq", "1", "-trace_stat", "-stf", "stat.csv", "-fd", "1",
        "-trace_err", "-error_file", "errors.log",
    ]  # fmt: skip
    with (step_dir / "screen.log").open("w") as out:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=step_dir
        )
    RUNNING.append(process)
    return Customer(process, step_dir, calls, bound)


def finish_customer(customer: Customer) -> dict:
    """Wait for SIPp (bounded); its counts, set-up times and CPU (rusage of `timeout` and SIPp)."""
    process = customer.process
    deadline = customer.started + customer.bound + 30
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            process.kill()
            _pid, status, usage = os.wait4(process.pid, 0)
            break
        time.sleep(0.1)
    process.returncode = os.waitstatus_to_exitcode(status)
    RUNNING.remove(process)
    times = []
    for path in glob.glob(str(customer.step_dir / "uac_*_rtt.csv")):
        with open(path) as handle:
            for row in handle:
                parts = row.strip().split(";")
                if len(parts) >= 2:
                    with contextlib.suppress(ValueError):
                        times.append(float(parts[1]))
    stats = {}
    with contextlib.suppress(FileNotFoundError), (customer.step_dir / "stat.csv").open() as handle:
        rows = list(csv.reader(handle, delimiter=";"))
        if len(rows) >= 2:
            stats = dict(zip(rows[0], rows[-1], strict=False))
    successful = int(stats.get("SuccessfulCall(C)", 0) or 0)
    return {
        "exit": process.returncode,
        "offered": customer.calls,
        "successful": successful,
        "failed": int(stats.get("FailedCall(C)", 0) or 0),
        "completed": 100 * successful / customer.calls,
        "setup_ms": times,
        "cpu": usage.ru_utime + usage.ru_stime,
        "errors": sipp_errors(customer.step_dir / "errors.log"),
    }


# --- CPU and settling -------------------------------------------------------------------------


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine so far (/proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def settle(freeswitch, mi_port: int) -> float:
    """Wait until FreeSWITCH holds no channel and OpenSIPS no dialog (bounded); seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < SETTLE_SECONDS:
        reply = freeswitch.api("show channels count").split()
        if reply and reply[0] == "0" and active_dialogs(mi_port) == 0:
            break
        time.sleep(0.5)
    return time.monotonic() - started


def node_cpu(cpu: dict[str, float]) -> float:
    return sum(cpu.get(label, 0.0) for label in ("freeswitch", "opensips", "uvicorn", "fs_events", "capture"))


# --- part 1 -----------------------------------------------------------------------------------


def recorded_step(args, number: int, calls: int, env: dict) -> dict:
    """`calls` recorded calls at once for --hold s; see the module's docstring."""
    prefix = f"r{number}c{calls}-"
    load = os.getloadavg()[0]
    mark = len(env["stats"].events)
    before, ticks_before = cpu_sample(env["roots"]), machine_ticks()
    customer = start_customer(
        env["sipp"], env["workdir"] / f"recorded{number}-{calls}", scenario=env["rtp_scenario"],
        caller=RECORDED, calls=calls, rate=args.ramp, hold=args.hold, prefix=prefix,
        sip_port=env["ports"]["sip"],
    )  # fmt: skip
    plateau = plateau_sample(args, customer, {**env["roots"], "uac": customer.process.pid})
    result = finish_customer(customer)
    settled = settle(env["freeswitch"], env["ports"]["mi"])
    after, ticks_after = cpu_sample(env["roots"]), machine_ticks()
    cpu = {label: after[label] - before[label] for label in after}
    cpu["sipp"] = cpu.pop("uas", 0.0) + result["cpu"]
    files = recordings(env["sox"], env["recordings"], prefix, args.hold)
    answered = len(result["setup_ms"])
    minutes = answered * args.hold / 60
    row = {
        "calls": calls,
        **result,
        "answered": answered,
        "p50": percentile(result["setup_ms"], 0.50),
        "p99": percentile(result["setup_ms"], 0.99),
        "cpu": cpu,
        "fs_ms_per_minute": 1000 * cpu["freeswitch"] / minutes if minutes else float("nan"),
        "node_ms_per_minute": 1000 * node_cpu(cpu) / minutes if minutes else float("nan"),
        "machine_busy": 100 * (ticks_after[0] - ticks_before[0]) / max(1, ticks_after[1] - ticks_before[1]),
        "plateau": plateau,
        "quality": quality(env["stats"].events[mark:], args.hold),
        "recordings": files,
        "registered": registered("recording", prefix, files["files"]),
        "settled": settled,
        "load": (load, os.getloadavg()[0]),
    }
    if not args.keep:
        for path in files["paths"]:
            path.unlink(missing_ok=True)  # a 200-call step writes ~400 MB
    report_recorded(args, number, row)
    return row


def plateau_sample(args, customer: Customer, roots: dict[str, int]) -> dict | None:
    """The cores FreeSWITCH, the node and SIPp keep busy, and the machine's busy share, while
    all of the step's calls are up (`roots` holds the customer's SIPp as "uac")."""
    begin = customer.started + customer.calls / args.ramp + 3
    end = customer.started + args.hold - 1
    if end - begin < 5:
        return None  # the first calls end before the last ones start: no plateau
    time.sleep(max(0.0, begin - time.monotonic()))
    first, ticks_first, at = cpu_sample(roots), machine_ticks(), time.monotonic()
    time.sleep(max(0.0, end - time.monotonic()))
    second, ticks_second = cpu_sample(roots), machine_ticks()
    seconds = time.monotonic() - at
    return {
        "seconds": seconds,
        "freeswitch_cores": (second["freeswitch"] - first["freeswitch"]) / seconds,
        "node_cores": (node_cpu(second) - node_cpu(first)) / seconds,
        "sipp_cores": sum(second[k] - first[k] for k in ("uas", "uac")) / seconds,
        "machine_busy": 100 * (ticks_second[0] - ticks_first[0]) / max(1, ticks_second[1] - ticks_first[1]),
    }


def report_recorded(args, number: int, row: dict) -> None:
    q, files, plateau = row["quality"], row["recordings"], row["plateau"]
    print(
        f"step {number}: {row['calls']} recorded calls x {args.hold} s: successful {row['successful']}"
        f" ({row['completed']:.1f} %), failed {row['failed']}; set-up p50 {row['p50']:.0f} ms"
        f" p99 {row['p99']:.0f} ms; SIPp exit {row['exit']}; settled {row['settled']:.1f} s;"
        f" CPU s {', '.join(f'{k} {v:.1f}' for k, v in row['cpu'].items())};"
        f" machine busy {row['machine_busy']:.0f} %; load {row['load'][0]:.2f} -> {row['load'][1]:.2f}",
        flush=True,
    )
    if plateau:
        print(
            f"  all calls up for {plateau['seconds']:.0f} s:"
            f" FreeSWITCH {plateau['freeswitch_cores']:.2f} cores,"
            f" node {plateau['node_cores']:.2f} cores, SIPp {plateau['sipp_cores']:.2f} cores,"
            f" machine {plateau['machine_busy']:.0f} % busy",
            flush=True,
        )
    for leg in ("A", "B"):
        s = q[leg]
        print(
            f"  leg {leg}: {s['channels']} channels, MOS min {s['mos_min']:.2f} mean {s['mos_mean']:.2f},"
            f" {s['below_4']} below 4.0, flaws {s['flaws']:.0f}, skipped {s['skipped']:.0f},"
            f" packets received {100 * s['received_share']:.1f} % of 50/s",
            flush=True,
        )
    print(
        f"  hangup causes {q['causes']}; recordings {files['files']} ({files['whole']} whole,"
        f" {files['short']} off by > {WHOLE_TOLERANCE} s, {files['silent']} silent on a side),"
        f" {files['bytes_per_minute'] / 1e6:.2f} MB per recorded minute, {row['registered']} registered;"
        f" SIPp's errors: {row['errors'] or 'none'}",
        flush=True,
    )


def print_recorded_table(args, rows: list[dict]) -> None:
    labels = ["freeswitch", "opensips", "uvicorn", "fs_events", "sipp"]
    print()
    print(
        f"| calls, {args.hold} s each | completed | set-up p50 / p99 ms | CPU s: " + " / ".join(labels)
        + " | CPU ms per call-minute: FreeSWITCH / node | freeswitch_events CPU ms per recording"
        " | all up: cores FreeSWITCH / node / SIPp, machine busy"
        " | MOS min / mean, A · B | flaws, A · B | packets received A · B"
        " | recordings whole | MB per minute |"
    )  # fmt: skip
    print("|---:|---:|---|---|---|---:|---|---|---|---|---|---:|")
    for r in rows:
        q, files, plateau = r["quality"], r["recordings"], r["plateau"]
        cpu = " / ".join(f"{r['cpu'].get(label, 0):.1f}" for label in labels)
        up = (
            f"{plateau['freeswitch_cores']:.2f} / {plateau['node_cores']:.2f} / {plateau['sipp_cores']:.2f},"
            f" {plateau['machine_busy']:.0f} %"
            if plateau
            else "—"
        )
        mos = " · ".join(f"{q[leg]['mos_min']:.2f} / {q[leg]['mos_mean']:.2f}" for leg in ("A", "B"))
        flaws = " · ".join(f"{q[leg]['flaws']:.0f}" for leg in ("A", "B"))
        packets = " · ".join(f"{100 * q[leg]['received_share']:.1f} %" for leg in ("A", "B"))
        print(
            f"| {r['calls']} | {r['completed']:.1f} % | {r['p50']:.0f} / {r['p99']:.0f} | {cpu} |"
            f" {r['fs_ms_per_minute']:.0f} / {r['node_ms_per_minute']:.0f} |"
            f" {1000 * r['cpu']['fs_events'] / max(1, r['registered']):.0f} | {up} | {mos} | {flaws} |"
            f" {packets} | {files['whole']} of {files['files']} | {files['bytes_per_minute'] / 1e6:.2f} |"
        )


# --- part 2 -----------------------------------------------------------------------------------


def capture_step(args, number: int, kind: str, capture: bool, caller_name: str, env: dict) -> dict:
    """--capture-rate calls/s for --capture-duration s by `caller_name`; see the module's docstring."""
    prefix = f"p{number}{kind[0]}{int(capture)}-"
    calls = args.capture_rate * args.capture_duration
    load = os.getloadavg()[0]
    before = cpu_sample(env["roots"])
    scenario = env["rtp_scenario"] if kind == "media" else SCENARIOS / "uac_call.xml"
    customer = start_customer(
        env["sipp"], env["workdir"] / f"capture{number}", scenario=scenario, caller=CALLERS[caller_name],
        calls=calls, rate=args.capture_rate, hold=args.capture_hold, prefix=prefix,
        sip_port=env["ports"]["sip"],
    )  # fmt: skip
    result = finish_customer(customer)
    settle(env["freeswitch"], env["ports"]["mi"])
    answered = len(result["setup_ms"])
    written = registered("capture", prefix, answered) if capture else 0
    after = cpu_sample(env["roots"])
    cpu = {label: after[label] - before[label] for label in after}
    cpu["sipp"] = cpu.pop("uas", 0.0) + result["cpu"]
    pcaps = [Path(p) for p in glob.glob(str(env["captures"] / "**" / f"{prefix}*.pcap"), recursive=True)]
    size = sum(p.stat().st_size for p in pcaps)
    row = {
        "kind": kind,
        "capture": capture,
        "calls": calls,
        **result,
        "answered": answered,
        "cpu": cpu,
        "p50": percentile(result["setup_ms"], 0.50),
        "p99": percentile(result["setup_ms"], 0.99),
        "opensips_ms_per_call": 1000 * cpu["opensips"] / calls,
        "listener_ms_per_call": 1000 * cpu["capture"] / len(pcaps) if pcaps else float("nan"),
        "pcaps": len(pcaps),
        "registered": written,
        "bytes_per_pcap": size / len(pcaps) if pcaps else float("nan"),
        "load": (load, os.getloadavg()[0]),
    }
    print(
        f"step {number}: {kind}, capture {'on' if capture else 'off'}:"
        f" {calls} calls at {args.capture_rate}/s,"
        f" successful {row['successful']} ({row['completed']:.1f} %); CPU s"
        f" {', '.join(f'{k} {v:.2f}' for k, v in cpu.items())}; pcaps {len(pcaps)} ({written} registered),"
        f" {row['bytes_per_pcap']:.0f} bytes each; load {row['load'][0]:.2f} -> {row['load'][1]:.2f};"
        f" SIPp's errors: {row['errors'] or 'none'}",
        flush=True,
    )
    return row


def print_capture_table(args, rows: list[dict]) -> None:
    print()
    print(
        f"| calls ({args.capture_rate}/s for {args.capture_duration} s, {args.capture_hold} s each) | capture"
        " | completed | set-up p50 / p99 ms | CPU s: OpenSIPS / capture listener / FreeSWITCH"
        " | OpenSIPS CPU ms per call"
        " | listener CPU ms per captured call | pcaps | bytes per pcap |"
    )
    print("|---|---|---:|---|---|---:|---:|---:|---:|")
    for r in rows:
        c = r["cpu"]
        print(
            f"| {r['kind']} | {'on' if r['capture'] else 'off'} | {r['completed']:.1f} % |"
            f" {r['p50']:.0f} / {r['p99']:.0f} |"
            f" {c['opensips']:.2f} / {c['capture']:.2f} / {c['freeswitch']:.2f} |"
            f" {r['opensips_ms_per_call']:.2f} | {r['listener_ms_per_call']:.2f} | {r['pcaps']} |"
            f" {r['bytes_per_pcap']:.0f} |"
        )


# --- main -------------------------------------------------------------------------------------


def start_node(args, env: dict, world: dict, processes: Processes, modules: str, binary: Path) -> None:
    """Supplier, call control, OpenSIPS, FreeSWITCH and the node's two listeners; their pids in roots."""
    from tests.media.test_live_freeswitch import FreeSwitch

    workdir, ports, roots, children = env["workdir"], env["ports"], env["roots"], env["children"]
    uas = processes.start(
        "uas",
        [env["sipp"], "-sf", str(SCENARIOS / "uas_answer.xml"), "-i", LOOPBACK, "-p", str(ports["uas"]),
         "-mp", str(free_port()), "-rtp_echo", "-aa", "-nostdin", "-buff_size", "4194304"],
        workdir / "uas.log", cwd=workdir,
    )  # fmt: skip
    roots["uas"] = uas.pid
    cc_url = f"http://{LOOPBACK}:{ports['cc']}/call-control/v1"
    log = workdir / "uvicorn.log"
    uvicorn = processes.start(
        "uvicorn",
        [sys.executable, "-m", "uvicorn", "smartswitch.asgi:application", "--host", LOOPBACK,
         "--port", str(ports["cc"]), "--workers", str(args.web_workers), "--lifespan", "on",
         "--log-level", "warning", "--no-access-log"],
        log, env=children, cwd=ROOT,
    )  # fmt: skip
    wait_ready(lambda: answers_http(f"{cc_url}/authorize"), uvicorn, log, "call control")
    roots["uvicorn"] = uvicorn.pid
    cfg = workdir / "opensips.cfg"
    cfg.write_text(
        call_path.render_cfg(
            world, modules=modules, cc_url=cc_url, mi_port=ports["mi"], baseline=False, uas_port=ports["uas"]
        )
    )
    log = workdir / "opensips.log"
    opensips = processes.start(
        "opensips",
        [str(binary), "-F", "-f", str(cfg), "-m", str(args.shm), "-M", "32", "-w", str(workdir)],
        log,
    )
    wait_ready(lambda: answers_mi(ports["mi"]), opensips, log, "OpenSIPS")
    roots["opensips"] = opensips.pid
    freeswitch = FreeSwitch(world["node"], workdir / "freeswitch")
    env["freeswitch"] = freeswitch
    freeswitch.start()
    roots["freeswitch"] = freeswitch.process.pid
    for label, command in (("fs_events", "freeswitch_events"), ("capture", "capture_listener")):
        process = processes.start(
            label, [sys.executable, "manage.py", command], workdir / f"{command}.log", env=children, cwd=ROOT
        )
        roots[label] = process.pid
    env["stats"] = HangupStats(world["node"], env["esl_password"])
    env["stats"].start()


def warm_up(env: dict) -> None:
    """A few recorded, captured calls before the first step (call control's snapshot loaded in
    each worker, the listeners' first files written), then until the node is idle again."""
    customer = start_customer(
        env["sipp"], env["workdir"] / "warm-up", scenario=env["rtp_scenario"],
        caller=CALLERS["recorded+captured"], calls=8, rate=4, hold=2, prefix="warm-",
        sip_port=env["ports"]["sip"],
    )  # fmt: skip
    result = finish_customer(customer)
    settle(env["freeswitch"], env["ports"]["mi"])
    registered("capture", "warm-", result["successful"])
    last, deadline = node_cpu(cpu_sample(env["roots"])), time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(1)
        now = node_cpu(cpu_sample(env["roots"]))
        if now - last < 0.05:
            break
        last = now
    print(
        f"warm-up: {result['successful']} of 8 calls, SIPp's errors: {result['errors'] or 'none'}", flush=True
    )


def interrupt(*_) -> None:
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--parts", default="recorded,capture", help="recorded, capture or both")
    parser.add_argument(
        "--calls", type=integers, default=[25, 50, 100, 200], help="recorded calls at once per step"
    )
    parser.add_argument("--hold", type=int, default=60, help="seconds each recorded call lasts")
    parser.add_argument("--ramp", type=float, default=20, help="calls/s at which a step's calls are placed")
    parser.add_argument("--capture-rate", type=int, default=20, help="part 2: calls/s")
    parser.add_argument("--capture-duration", type=int, default=20, help="part 2: seconds of calls per step")
    parser.add_argument("--capture-hold", type=int, default=3, help="part 2: seconds each call lasts")
    parser.add_argument("--web-workers", type=int, default=2, help="uvicorn --workers")
    parser.add_argument("--shm", type=int, default=1024, help="OpenSIPS shared memory, MB")
    parser.add_argument("--keep", action="store_true", help="keep the database, the logs and the files")
    args = parser.parse_args()
    parts = set(args.parts.split(","))

    _fs_binary, sox = find_freeswitch()
    binary, modules, sipp = call_path.find_engines()
    ports = {name: free_port() for name in ("sip", "uas", "mi", "cc", "media", "esl", "hep", "hep_out")}
    workdir = Path(tempfile.mkdtemp(prefix="smartswitch-bench-media-"))
    # Read by django.setup() in configure() and by the children (listeners, uvicorn).
    os.environ.update(
        {
            "RECORDINGS_DIR": str(workdir / "freeswitch" / "recordings"),  # where FreeSwitch records
            "CAPTURES_DIR": str(workdir / "captures"),
            "CAPTURE_HEP_PORT": str(ports["hep"]),
            "OPENSIPS_HEP_PORT": str(ports["hep_out"]),
        }
    )
    children = call_path.configure(args.database_url, workdir, ports["mi"])
    from tests.media.test_live_freeswitch import ESL_PASSWORD

    tone = workdir / "tone.wav"
    make_tone(sox, tone)
    rtp_scenario = workdir / "uac_rtp_call.xml"
    rtp_scenario.write_text((SCENARIOS / "uac_rtp_call.xml").read_text().replace("[tone]", str(tone)))
    env = {
        "workdir": workdir, "ports": ports, "roots": {}, "children": children, "sipp": sipp, "sox": sox,
        "rtp_scenario": rtp_scenario, "recordings": workdir / "freeswitch" / "recordings",
        "captures": workdir / "captures", "esl_password": ESL_PASSWORD,
    }  # fmt: skip
    processes = Processes()
    signal.signal(signal.SIGTERM, interrupt)
    name = urlparse(args.database_url).path.lstrip("/")
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC · {describe_machine()}", flush=True)
    print(f"OpenSIPS {binary}; FreeSWITCH {_fs_binary}; SIPp {sipp}; logs in {workdir}", flush=True)
    recorded_rows, capture_rows = [], []
    try:
        from django.core.management import call_command

        create_database(args.database_url)
        call_command("migrate", verbosity=0)
        world = build_media_world(ports, ESL_PASSWORD)
        print(f"database {name} created and built", flush=True)
        start_node(args, env, world, processes, modules, binary)
        warm_up(env)
        number = 0
        if "recorded" in parts:
            for calls in args.calls:
                number += 1
                check_alive(processes, env)
                recorded_rows.append(recorded_step(args, number, calls, env))
        if "capture" in parts:
            for kind, capture, caller in CAPTURE_STEPS:
                number += 1
                check_alive(processes, env)
                capture_rows.append(capture_step(args, number, kind, capture, caller, env))
    except KeyboardInterrupt:
        print("\ninterrupted", flush=True)
    finally:
        if recorded_rows:
            print_recorded_table(args, recorded_rows)
        if capture_rows:
            print_capture_table(args, capture_rows)
        for customer in RUNNING:
            with contextlib.suppress(ProcessLookupError, ChildProcessError):
                customer.terminate()
                os.wait4(customer.pid, 0)
        if "stats" in env:
            env["stats"].stop()
        if "freeswitch" in env:
            env["freeswitch"].stop()
        processes.stop_all()
        if not args.keep:
            drop_database(args.database_url)
            shutil.rmtree(workdir, ignore_errors=True)
            print(f"dropped database {name}", flush=True)


def check_alive(processes: Processes, env: dict) -> None:
    for label, process in processes.running.items():
        if process.poll() is not None:
            raise SystemExit(f"{label} exited with {process.returncode}: see {env['workdir']}")
    freeswitch = env["freeswitch"].process
    if freeswitch.poll() is not None:
        raise SystemExit(f"FreeSWITCH exited with {freeswitch.returncode}: see {env['workdir']}/freeswitch")


if __name__ == "__main__":
    main()
