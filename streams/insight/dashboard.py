"""The live dashboard of ``courier insight``: per destination, per minute, in a table keyed by
destination, and a page that shows it (GET /dashboard, its data at GET /api/dashboard).

The events topic is keyed by lead id; each event's facts (no lead value) are passed on to
an internal topic keyed by destination, whose partition holds that destination's minute
buckets (``stats.py``), so one destination's numbers live in one partition and several
insight workers each hold whole destinations. GET /api/dashboard answers from this
worker's destinations and asks the other insight workers for theirs: the page shows the
sum. Circuit states come from the control topic, keyed by destination too."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from importlib.resources import files
from typing import Any

import aiohttp
import orjson
from aiokafka.errors import KafkaError

from schemas import ALERT_EVENT
from streams.agents import periodic
from streams.avro import AvroDecodeError, EventDecoder, EventEncoder
from streams.config import DestinationsFile, Settings
from streams.config.alerts import AlertRules, AlertWebhook
from streams.control.tables import keyed_table
from streams.insight.alerting import (
    DEAD_LETTER_MINUTES,
    Condition,
    alert_record,
    conditions,
    signature,
    transitions,
    webhook_text,
)
from streams.insight.lag import group_lag
from streams.insight.stats import (
    DEAD_LETTERS,
    MINUTE,
    WINDOWS,
    add_dead_letter,
    add_event,
    add_feedback,
    day_reads,
    fact,
    feedback_fact,
    hour_of,
    merged,
    minute_of,
    summary,
)
from streams.secrets import resolve_references

log = logging.getLogger(__name__)

TAIL_SIZE = 50
KEEP_MINUTES = WINDOWS["day"] + 5
CHART_MINUTES = 60
STATIC = files(__package__).joinpath("static")
STATIC_TYPES = {".js": "application/javascript", ".css": "text/css", ".html": "text/html"}
PEER_TIMEOUT_S = 5.0
LAG_CHECK_S = 5.0
ALERT_CHECK_S = 5.0
RULES_WAIT_S = 30.0
WEBHOOK_TIMEOUT_S = 10.0
WEBHOOK_PAUSES_S = (1.0, 4.0)  # between the tries of an alert webhook post
STATIC_FILES = frozenset({"uPlot.iife.min.js", "uPlot.min.css", "dashboard.js"})


class RulesGate:
    """May alerts be judged: once the configuration published before the start is known
    (``known`` set; None: at once), or ``wait_s`` after the first alert waited for it,
    whichever is first. Then the rules in force are used and that is said once: an insight
    worker whose config topic cannot be read still alerts, with its own file's rules."""

    def __init__(
        self,
        known: asyncio.Event | None,
        wait_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._known = known
        self._wait_s = wait_s
        self._clock = clock
        self._waiting_since: float | None = None  # when an alert was first to be judged

    def ready(self) -> bool:
        if self._known is None or self._known.is_set():
            return True
        if self._waiting_since is None:
            self._waiting_since = self._clock()
        if self._clock() - self._waiting_since < self._wait_s:
            return False
        log.warning(
            "alerts: the config topic was not read in %.0f s; judging with the rules in "
            "force", self._wait_s,
        )  # fmt: skip
        self._known.set()
        return True

    async def wait(self, check_s: float) -> None:
        """Until ``ready``, looking again at least every ``check_s``."""
        while not self.ready():
            assert self._known is not None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._known.wait(), check_s)


def _owner(key: str) -> str:
    return key.split("|", 1)[0]


def register_dashboard(
    app: Any,
    settings: Settings,
    raw: Callable[[str], Any],
    refusal: Callable[[str | None], tuple[int, str] | None],
    destinations: DestinationsFile | None = None,
    rules_known: asyncio.Event | None = None,
) -> tuple[
    Callable[[dict[str, Any]], Any],
    Callable[[dict[str, Any]], Any],
    Callable[[str], Any],
    Callable[[DestinationsFile], None],
]:
    """Wires the dashboard and the alerts into the insight ``app``; returns what the history
    agents call for each delivery event, each judged feedback notice and each dead
    letter's reason, and ``use`` for
    each version of the configuration. ``destinations``: the file whose ``alerts`` rules
    and schedules apply until a version replaces it (defaults without one);
    ``rules_known``: set once the versions published before the start have been read (no
    alert is judged before; None: at once)."""
    by_destination = raw(f"{app.conf.id}-by-destination")
    stats = keyed_table(app, "destination_stats", settings.partitions, _owner)
    known = keyed_table(app, "destinations_seen", settings.partitions, _owner)
    circuits = keyed_table(app, "circuit_states", settings.partitions, _owner)
    caps_used = keyed_table(app, "cap_usage", settings.partitions, _owner)
    paused = keyed_table(app, "paused", settings.partitions, _owner)
    tail: deque[dict[str, Any]] = deque(maxlen=TAIL_SIZE)
    decoder = EventDecoder()
    alert_states = keyed_table(app, "alert_states", settings.partitions, _owner)
    alerts_topic = raw(settings.alerts_topic)
    # The alert rules and schedules in force: the file's at start, then each version of the
    # configuration the workers run (``use``, from the config topic).
    rules = AlertRules()
    schedules: dict[str, Any] = {}

    def use(running: DestinationsFile) -> None:
        nonlocal rules
        rules = running.alerts
        schedules.clear()
        schedules.update({d.id: d.schedule for d in running.destinations})

    if destinations is not None:
        use(destinations)

    gate = RulesGate(rules_known, RULES_WAIT_S)

    async def rules_in_force() -> AlertRules:
        """The rules, once the gate opens (waited for)."""
        await gate.wait(ALERT_CHECK_S)
        return rules

    encoder = EventEncoder(ALERT_EVENT)
    posts: set[asyncio.Task[None]] = set()  # webhook posts under way
    pending: dict[str, str] = {}  # alert changes sent to the agent, not yet in the table
    # The delivery workers' consumer lag, per topic and partition (every insight worker
    # reads the same from the cluster).
    lag: dict[str, dict[int, int]] = {}

    async def on_event(record: dict[str, Any]) -> None:
        facts = fact(record)
        tail.append({**facts, "lead_id": record["lead_id"], "attempt": record["attempt"]})
        await by_destination.send(key=facts["destination"].encode(), value=orjson.dumps(facts))

    async def on_feedback(record: dict[str, Any]) -> None:
        facts = feedback_fact(record)
        if facts is not None:
            await by_destination.send(key=facts["destination"].encode(), value=orjson.dumps(facts))

    async def on_dead_letter(reason: str) -> None:
        facts = {"destination": DEAD_LETTERS, "at": time.time(), "reason": reason}
        await by_destination.send(key=DEAD_LETTERS.encode(), value=orjson.dumps(facts))

    @app.agent(by_destination, name="dashboard_stats")
    async def count(stream: Any) -> None:
        async for value in stream:
            try:
                facts = orjson.loads(value)
                if facts.get("kind") == "alert":
                    await alert(facts)
                    continue
                destination = facts["destination"]
                # Its minute's bucket, and its hour's (a day is read from hours).
                for key in (
                    f"{destination}|{minute_of(facts['at'])}",
                    f"{destination}|hour|{hour_of(facts['at'])}",
                ):
                    if destination == DEAD_LETTERS:
                        stats[key] = add_dead_letter(stats.get(key), facts["reason"])
                    elif facts.get("kind") == "feedback":
                        stats[key] = add_feedback(stats.get(key), facts)
                    else:
                        stats[key] = add_event(stats.get(key), facts)
                if destination != DEAD_LETTERS and known.get(destination) is None:
                    known[destination] = True
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                log.warning("dashboard: a record it cannot count (%s)", exc)

    # Circuit changes (control topic) and operators' pauses (admin topic).
    control = app.topic(
        settings.control_topic, settings.admin_topic, key_serializer="raw", value_serializer="raw"
    )

    @app.agent(control, name="dashboard_circuits")
    async def follow(stream: Any) -> None:
        async for value in stream:
            try:
                name, event = await decoder.decode(value)
                destination = event["destination_id"]
                if name.endswith(".PerformanceTally"):
                    continue  # for the workers' performance distributions
                if name.endswith(".CapUsage"):
                    caps_used[destination] = [
                        [w["window"], w["used"], w["cap"]] for w in event["windows"]
                    ]
                    continue
                if name.endswith(".AdminAction"):
                    if event["action"] == "pause":
                        paused[destination] = {"by": event["by"], "reason": event["reason"]}
                    elif event["action"] == "resume" and paused.get(destination) is not None:
                        del paused[destination]
                    continue
                circuits[destination] = {
                    "state": event["after"],
                    "since": event["at"].timestamp(),
                    "reason": event["reason"],
                }
                in_force = await rules_in_force()
                if in_force.circuit_open.enabled and event["after"] in ("open", "closed"):
                    # Each opening is an alert, however short (a 5-second check could miss
                    # it); it resolves when the circuit closes again.
                    opened = Condition(
                        "circuit_open",
                        event["after"] == "open",
                        1.0 if event["after"] == "open" else 0.0,
                        0,
                        f"{destination}: circuit {event['after']} ({event['reason']})",
                    )
                    key = f"{destination}|circuit_open"
                    now = time.time()
                    for condition, state, since in transitions(
                        {"circuit_open": alert_states.get(key)}, [opened], now
                    ):
                        record = {**asdict(condition), "at": now}
                        change = {"destination": destination, "state": state, "since": since}
                        await alert({**change, "record": record})
            except (AvroDecodeError, KeyError, ValueError, TypeError) as exc:
                log.warning("dashboard: a control record that is not a circuit event (%s)", exc)

    @periodic(app, 3600.0, "forget_old_buckets")
    async def forget() -> None:
        """Minute and hour buckets older than a day go (a scan of this worker's keys, hourly)."""
        horizon = minute_of(time.time()) - KEEP_MINUTES * MINUTE
        mine = _mine(app)
        old = [
            key
            for key in list(stats.keys())
            if int(key.rsplit("|", 1)[1]) < horizon and stats.partition_for_key(key) in mine
        ]
        for key in old:
            del stats[key]

    @periodic(app, LAG_CHECK_S, "measure_lag")
    async def measure_lag() -> None:
        # The topics the workers consume: leads, then the hops inside.
        watched = [settings.leads_topic, settings.routing_topic, settings.work_topic]
        try:
            found = await group_lag(
                settings.bootstrap_servers(), settings.app_id, watched, settings.kafka_security()
            )
        except KafkaError as exc:
            log.warning("consumer lag: cannot be read (%s)", exc)
            return
        lag.clear()
        lag.update(found)

    @periodic(app, ALERT_CHECK_S, "judge_alerts")
    async def judge() -> None:
        """Each of this worker's destinations against the alert rules; a change of state
        is an AlertEvent (and a webhook post, when one is set)."""
        if not gate.ready():
            return  # judged on the next check, with the workers' rules
        now = time.time()
        minute = minute_of(now)
        mine = _mine(app)
        # The longest window a rule looks at: that many minute buckets are read per check.
        judged = max(rules.error_rate.minutes, rules.no_acceptance.minutes, DEAD_LETTER_MINUTES)
        owned = [d for d in known if known.partition_for_key(d) in mine]
        if known.partition_for_key(DEAD_LETTERS) in mine:
            owned.append(DEAD_LETTERS)
        for destination in owned:
            minutes = {
                m: stats.get(f"{destination}|{m}")
                for m in range(minute - (judged - 1) * MINUTE, minute + MINUTE, MINUTE)
            }
            schedule = schedules.get(destination)
            open_hours = schedule is None or schedule.is_open(datetime.fromtimestamp(now, UTC))
            found = [  # a circuit is judged on each of its events (``follow``), not here
                c
                for c in conditions(destination, rules, minutes, minute, None, open_hours)
                if c.rule != "circuit_open"
            ]
            states = {c.rule: alert_states.get(f"{destination}|{c.rule}") for c in found}
            for condition, state, since in transitions(states, found, now):
                key = f"{destination}|{condition.rule}"
                if pending.get(key) == state:
                    continue  # said already; its record is on the way to the table
                pending[key] = state
                # Written by the agent, in the destination's partition: a table write
                # needs the partition of the record being handled (a timer has none).
                change = {
                    "kind": "alert",
                    "destination": destination,
                    "state": state,
                    "since": since,
                    "record": {**asdict(condition), "at": now},
                }
                await by_destination.send(key=destination.encode(), value=orjson.dumps(change))

    async def alert(change: dict[str, Any]) -> None:
        destination, state = change["destination"], change["state"]
        details = dict(change["record"])
        at = details.pop("at")
        condition = Condition(**details)
        key = f"{destination}|{condition.rule}"
        alert_states[key] = {"firing": state == "firing", "since": change["since"]}
        pending.pop(key, None)
        record = alert_record(destination, condition, state, change["since"], at)
        log.warning("alert %s %s: %s", condition.rule, state, condition.message)
        await alerts_topic.send(key=destination.encode(), value=encoder.encode(record))
        if rules.webhook is not None:
            # Posted beside the agent, which goes on counting while a receiver is slow.
            posting = asyncio.create_task(_post_alert(rules.webhook, record))
            posts.add(posting)
            posting.add_done_callback(posts.discard)

    def local() -> dict[str, Any]:
        now = minute_of(time.time())
        mine = _mine(app)
        destinations = [d for d in known if known.partition_for_key(d) in mine]
        per_window: dict[str, dict[str, Any]] = {name: {} for name in WINDOWS}
        buckets: dict[str, dict[str, Any]] = {}
        for destination in [*destinations, DEAD_LETTERS]:
            if known.partition_for_key(destination) not in mine:
                continue
            last_hour = range(now - (WINDOWS["hour"] - 1) * MINUTE, now + MINUTE, MINUTE)
            reads = day_reads(now)
            minutes = {
                m: stats.get(f"{destination}|{m}") for m in sorted({*last_hour, *reads.minutes})
            }
            hours = [stats.get(f"{destination}|hour|{h}") for h in reads.hours]
            buckets[destination] = {str(m): b for m, b in minutes.items() if b}
            for name in ("minute", "hour"):
                start = now - (WINDOWS[name] - 1) * MINUTE
                per_window[name][destination] = merged(b for m, b in minutes.items() if m >= start)
            per_window["day"][destination] = merged([*(minutes[m] for m in reads.minutes), *hours])
        return {
            "windows": per_window,
            "minutes": {
                d: {m: b for m, b in minutes.items() if int(m) > now - CHART_MINUTES * MINUTE}
                for d, minutes in buckets.items()
            },
            "circuits": {d: circuits.get(d) for d in destinations if circuits.get(d) is not None},
            "caps": {d: caps_used.get(d) for d in destinations if caps_used.get(d) is not None},
            "paused": {d: paused.get(d) for d in destinations if paused.get(d) is not None},
            "tail": list(tail),
            "lag": {topic: {str(p): n for p, n in parts.items()} for topic, parts in lag.items()},
        }

    async def everything(authorization: str | None) -> dict[str, Any]:
        parts = [local()]
        peers = _peers(app)
        if peers:
            headers = {"Authorization": authorization} if authorization else {}
            timeout = aiohttp.ClientTimeout(total=PEER_TIMEOUT_S)
            async with aiohttp.ClientSession(timeout=timeout) as session:

                async def ask(peer: str) -> dict[str, Any] | None:
                    try:
                        url = f"{peer.rstrip('/')}/api/dashboard?local=1"
                        async with session.get(url, headers=headers) as res:
                            return dict(await res.json()) if res.status == 200 else None
                    except (aiohttp.ClientError, TimeoutError, ValueError):
                        return None

                parts += [p for p in await asyncio.gather(*map(ask, peers)) if p]
        return _shown(parts)

    @app.page("/api/dashboard")
    async def api(web: Any, request: Any) -> Any:
        refused = refusal(request.headers.get("Authorization"))
        if refused is not None:
            return web.json({"error": refused[1]}, status=refused[0])
        if request.query.get("local"):
            return web.json(local())
        return web.json(await everything(request.headers.get("Authorization")))

    @app.page("/dashboard")
    async def page(web: Any, request: Any) -> Any:
        return _static(web, "dashboard.html")

    @app.page("/static/{name}")
    async def static(web: Any, request: Any, name: str) -> Any:
        if name not in STATIC_FILES:
            return web.json({"error": "not found"}, status=404)
        return _static(web, name)

    return on_event, on_feedback, on_dead_letter, use


async def _post_alert(webhook: AlertWebhook, record: dict[str, Any]) -> None:
    """The POST, signed when a secret is set, tried again after a failure the receiver
    may get over (unreachable, a timeout, 429, 5xx), once after each of WEBHOOK_PAUSES_S; a
    failure is logged, never raised (the alert is on the alerts topic either way)."""
    body = orjson.dumps(webhook_text(record))
    what = f"{record['rule']} {record['state']}"
    timeout = aiohttp.ClientTimeout(total=WEBHOOK_TIMEOUT_S)
    for attempt, pause in enumerate((*WEBHOOK_PAUSES_S, None), start=1):
        headers = {"Content-Type": "application/json"}
        if webhook.secret is not None:  # signed at each try: the receiver checks its age
            headers["X-Courier-Signature"] = signature(
                resolve_references(webhook.secret), body, int(time.time())
            )
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(webhook.url, data=body, headers=headers) as res,
            ):
                if res.status < 300:
                    log.info("alert webhook: %s posted", what)
                    return
                failure = f"HTTP {res.status}"
                if res.status != 429 and res.status < 500:
                    log.warning("alert webhook: %s refused (%s)", what, failure)
                    return  # the receiver will not take it however often it is sent
        except (aiohttp.ClientError, TimeoutError) as exc:
            failure = f"unreachable ({type(exc).__name__})"
        if pause is None:
            log.warning("alert webhook: %s not posted after %d tries (%s)", what, attempt, failure)
            return
        log.info("alert webhook: %s try %d failed (%s)", what, attempt, failure)
        await asyncio.sleep(pause)


def _static(web: Any, name: str) -> Any:
    body = STATIC.joinpath(name).read_bytes()
    kind = STATIC_TYPES[name[name.rindex(".") :]]
    return web.bytes(body, headers={"Content-Type": f"{kind}; charset=utf-8"})


def _mine(app: Any) -> set[int]:
    return {tp.partition for tp in app.consumer.assignment()}


def _peers(app: Any) -> list[str]:
    """The other insight workers' web addresses (Faust's group metadata)."""
    try:
        hosts = app.router.table_metadata("destination_stats")
    except (KeyError, AttributeError):
        return []
    own = str(app.conf.canonical_url).rstrip("/")
    return [str(h) for h in hosts if str(h).rstrip("/") != own]


def _shown(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Every worker's destinations together (each destination lives in one), summarized."""
    windows: dict[str, dict[str, Any]] = {name: {} for name in WINDOWS}
    minutes: dict[str, Any] = {}
    circuits: dict[str, Any] = {}
    caps: dict[str, Any] = {}
    paused: dict[str, Any] = {}
    tail: list[dict[str, Any]] = []
    lag: dict[str, Any] = {}
    for part in parts:
        lag = lag or part.get("lag", {})  # the same in each: read from the cluster
        for name in WINDOWS:
            windows[name].update(part["windows"][name])
        minutes.update(part["minutes"])
        circuits.update(part["circuits"])
        caps.update(part.get("caps", {}))  # absent from an older peer
        paused.update(part.get("paused", {}))
        tail += part["tail"]
    dead = {name: windows[name].pop(DEAD_LETTERS, None) for name in WINDOWS}
    minutes.pop(DEAD_LETTERS, None)
    return {
        "generated_at": time.time(),
        "destinations": sorted({d for w in windows.values() for d in w}),
        "windows": {
            name: {d: summary(b) for d, b in sorted(per.items())} for name, per in windows.items()
        },
        "dead_letters": {
            name: dict(sorted(b["reasons"].items())) if b else {} for name, b in dead.items()
        },
        "per_minute": {
            d: sorted(
                (int(m), b["attempts"], b["accepted"], b["rejected"], b["errors"])
                for m, b in per.items()
            )
            for d, per in sorted(minutes.items())
        },
        "circuits": circuits,
        "caps": caps,  # destination → [[window, used, cap], ...] as last reported
        "paused": paused,  # destination → who paused it and why (courier admin)
        "tail": sorted(tail, key=lambda e: e["at"])[-TAIL_SIZE:],
        # topic → {"total": waiting, "partitions": {partition: waiting}}
        "lag": {
            topic: {"total": sum(per.values()), "partitions": per} for topic, per in lag.items()
        },
    }
