"""``courier``: run a worker, publish leads, read events, try the whole thing with ``demo``."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import getpass
import logging
import signal
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import click
import orjson
from aiokafka.admin import NewTopic
from aiokafka.errors import KafkaConnectionError
from pydantic import ValidationError

from streams.cli.broker import BrokerError, EmbeddedBroker
from streams.cli.summary import startup_summary
from streams.config import Destination, DestinationsFile, Settings, load_destinations
from streams.config.flows import in_no_flow, unreachable
from streams.config.versions import ConfigVersion
from streams.errors import ConfigError, MappingError
from streams.live_config import StartingConfig
from streams.logs import json_line
from streams.secrets import SCRUBBER, scrub_log_records, without_secret_values


def _settings(**overrides: Any) -> Settings:
    """Environment (``COURIER_*``) first, command-line options over it."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        raise ConfigError("settings", [_setting_problem(e, given) for e in exc.errors()]) from None


def _setting_problem(error: Any, given: dict[str, Any]) -> str:
    """``in_flight (COURIER_IN_FLIGHT): reason``: where the value came from, so that the
    user knows what to change; never the value itself (it may be a password)."""
    loc = [str(part) for part in error["loc"]]
    message = str(error["msg"]).removeprefix("Value error, ")
    if not loc:
        # A check of several settings together names the one it is about first.
        head, sep, rest = message.partition(": ")
        if not (sep and head in Settings.model_fields):
            return message
        loc, message = [head], rest
    source = "command line" if loc[0] in given else f"COURIER_{loc[0].upper()}"
    return f"{'.'.join(loc)} ({source}): {message}"


def _make_topics(settings: Settings, configs: dict[str, dict[str, str]]) -> None:
    """Each topic of ``configs`` (name → topic config) made if missing, with the
    settings' partitions and replication; a refusal is this command's one-line failure."""
    from streams.kafka_clients import TopicsNotMade, ensure_topics

    wanted = [
        NewTopic(name, settings.partitions, settings.replication, topic_configs=config)
        for name, config in configs.items()
    ]
    try:
        asyncio.run(ensure_topics(settings.bootstrap_servers(), wanted, settings.kafka_security()))
    except TopicsNotMade as exc:
        _fail(str(exc))


def use_event_loop(name: str) -> None:
    """The event loop a worker runs on (``COURIER_EVENT_LOOP``), chosen before any loop is
    made; uvloop missing (not built for this platform) is said, and asyncio's used."""
    if name != "uvloop":
        return
    try:
        import mode.loop

        mode.loop.use("uvloop")
    except ImportError:
        click.echo("courier: uvloop is not installed; running on asyncio's own loop", err=True)


def tune_gc(young: int) -> None:
    """Python's collector, for a process that holds many objects for seconds (``young``:
    ``COURIER_GC_YOUNG``). Young collections every ``young`` allocations instead of 700:
    a lead held for a slow recipient survives them all, and each older collection it
    reaches scans every live object again; fewer of them cost far less, and what they free
    (only reference cycles: the rest goes the moment it is dropped) waits a little longer."""
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young, middle, old)


def _fail(message: str) -> NoReturn:
    click.echo(SCRUBBER.scrub(f"courier: {message}"), err=True)
    sys.exit(2)


broker_option = click.option(
    "--broker", help="kafka://HOST:PORT of the cluster (env COURIER_BROKER)."
)


class _Commands(click.Group):
    """Every command: a broker that cannot be reached, or a setting or destinations file
    that is wrong, is one line and exit code 2. (``config publish`` catches ``ConfigError``
    itself to add that nothing was published.)"""

    def invoke(self, ctx: click.Context) -> Any:
        if ctx.invoked_subcommand != "worker":
            # The commands say what went wrong themselves, in one line; aiokafka would log
            # each failed connection attempt too (the worker keeps Faust's logging).
            logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
        try:
            return super().invoke(ctx)
        except KafkaConnectionError as exc:
            _fail(f"cannot reach the Kafka broker ({exc})")
        except ConfigError as exc:
            _fail(str(exc))


@click.group(cls=_Commands)
def main() -> None:
    """Lead Courier: deliver leads from Kafka to the systems that buy or work them."""
    scrub_log_records()


def _announce(lines: list[str], warnings: list[str], settings: Settings) -> None:
    """The start-up summary on stderr, whatever the log level; JSON lines with the JSON
    log format."""
    for level, texts in (("info", lines), ("warning", warnings)):
        for text in texts:
            if settings.log_format == "json":
                click.echo(json_line(level, text), err=True)
            else:
                click.echo(f"courier: {'warning: ' if level == 'warning' else ''}{text}", err=True)


def _say(text: str) -> None:
    """Output that may quote a request or a recipient's answer: credentials scrubbed."""
    click.echo(SCRUBBER.scrub(text))


@main.command()
@broker_option
@click.option("--destinations", type=click.Path(path_type=Path), help="Destinations YAML.")
@click.option("--app-id", help="Consumer group and app id (env COURIER_APP_ID).")
@click.option("--in-flight", type=int, help="Leads delivered at once (env COURIER_IN_FLIGHT).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warn", "error", "crit"]))
def worker(**options: Any) -> None:
    """Consume leads and deliver them. Without --broker, start the embedded broker."""
    settings = _settings(**options)
    destinations = load_destinations(settings.destinations)

    use_event_loop(settings.event_loop)
    tune_gc(settings.gc_young)
    from streams.app import create_app, worker_class

    broker: EmbeddedBroker | None = None
    if settings.broker is None:
        broker = EmbeddedBroker()
        try:
            broker.start()
        except BrokerError as exc:
            _fail(str(exc))
        click.echo(
            f"courier: no --broker given: started the embedded broker at {broker.url} "
            "(Tansu, memory only: its topics are gone when this worker stops, so the "
            "worker keeps its tables in memory too)",
            err=True,
        )
        # Tables on disk would outlive the broker's changelogs: the next start would find
        # state for topics that no longer exist.
        settings = settings.model_copy(update={"broker": broker.url, "store": "memory"})
    try:
        # Faust would print a page of traceback for a broker it cannot reach: the first
        # admin call says it in one line (the group turns the error into exit code 2).
        # The topics only we write are made before Faust starts: made by a task once the
        # group has joined, they made Tansu rebalance the group and repeat records.
        from streams.kafka_clients import TopicsNotMade
        from streams.topics import written_topics

        _make_topics(settings, written_topics(settings))
        try:
            starting = asyncio.run(_starting_config(settings, destinations))
        except TopicsNotMade as exc:
            _fail(str(exc))
        destinations = starting.destinations
        idempotent = _idempotent_producer(settings)
        app = create_app(
            settings,
            destinations,
            config_seen=starting.seen,
            config_text=starting.text,
            idempotent_producer=idempotent,
        )
        lines, warnings = startup_summary(
            settings, destinations, embedded=broker is not None, idempotent=idempotent
        )
        _announce([*lines, f"configuration: {starting.said}"], warnings, settings)
        worker = worker_class(settings.log_format)
        worker(app, loglevel=settings.log_level, quiet=True).execute_from_commandline()
    finally:
        if broker is not None:
            broker.stop()


def _idempotent_producer(settings: Settings) -> bool:
    """``kafka_idempotence`` decided with the broker: ``on`` and a broker that refuses it
    is this command's one-line failure."""
    if settings.kafka_idempotence == "off":
        return False
    from streams.kafka_clients import IDEMPOTENCE_PROBE_S, takes_idempotent_producer

    taken = asyncio.run(
        takes_idempotent_producer(settings.bootstrap_servers(), settings.kafka_security())
    )
    if not taken and settings.kafka_idempotence == "on":
        _fail(
            "kafka_idempotence: on, but the broker did not start an idempotent producer "
            f"(InitProducerId refused, or not answered in {IDEMPOTENCE_PROBE_S:g} s; the "
            "embedded Tansu always refuses): set COURIER_KAFKA_IDEMPOTENCE=auto or off"
        )
    return taken


async def _starting_config(settings: Settings, from_file: DestinationsFile) -> StartingConfig:
    """The newest of the worker's file and the config topic's last version."""
    from streams.live_config import starting_config

    path = settings.destinations
    return await starting_config(
        settings.bootstrap_servers(),
        settings.config_topic,
        path,
        from_file,
        await asyncio.to_thread(path.read_text, encoding="utf-8"),
        datetime.fromtimestamp((await asyncio.to_thread(path.stat)).st_mtime, UTC),
        by=f"worker {socket.gethostname()}",
        replication=settings.replication,
        security=settings.kafka_security(),
    )


@main.command()
@click.argument("file", type=click.File("rb"))
@broker_option
@click.option("--topic", help="Input topic (env COURIER_LEADS_TOPIC).")
def publish(file: Any, broker: str | None, topic: str | None) -> None:
    """Publish leads from a JSON-lines FILE ('-' for stdin), one record per line."""
    from streams.cli.console import publish_lines

    settings = _settings_with_broker(broker, leads_topic=topic)
    not_objects: list[int] = []
    count = asyncio.run(
        publish_lines(
            settings.bootstrap_servers(),
            settings.leads_topic,
            file,
            settings.kafka_security(),
            not_objects,
        )
    )
    click.echo(f"published {count} lead(s) to {settings.leads_topic}", err=True)
    if not_objects:
        lines = ", ".join(map(str, not_objects[:5])) + (", …" if len(not_objects) > 5 else "")
        click.echo(
            f"courier: warning: {len(not_objects)} of them are not a JSON object on one line "
            f"(line {lines}): the worker dead-letters them. A lead is one line of JSON; a "
            "JSON array or a pretty-printed file is not JSON lines",
            err=True,
        )


@main.command()
@broker_option
@click.option(
    "--reason", "reasons", multiple=True, help="Only this dead-letter reason (repeatable)."
)
@click.option("--lead", "lead_id", help="Only this lead's dead letters (by record key).")
@click.option("--since", type=click.DateTime(), help="Only dead letters written from then (UTC).")
@click.option("--until", type=click.DateTime(), help="Only dead letters written before then (UTC).")
@click.option("--dry-run", is_flag=True, help="Count what would be replayed; publish nothing.")
def replay(
    broker: str | None,
    reasons: tuple[str, ...],
    lead_id: str | None,
    since: datetime | None,
    until: datetime | None,
    dry_run: bool,
) -> None:
    """Publish dead-lettered records to the leads topic again (after fixing their cause).

    Each dead letter is replayed once: a replay notes what it took (topic
    <dlq>.replayed) and the next takes only the rest."""
    from streams.cli.console import (
        ALREADY_REPLAYED,
        NOT_REPLAYED_NOTICE,
        NOT_REPLAYED_TRUNCATED,
        READ_BACK_WHERE_FROM,
        ReplayFilter,
        replay_dead_letters,
    )
    from streams.handlers import DEAD_LETTER_REASONS

    unknown = sorted(set(reasons) - set(DEAD_LETTER_REASONS))
    if unknown:
        _fail(
            f"--reason: no dead letter has the reason {', '.join(map(repr, unknown))} "
            f"(known: {', '.join(DEAD_LETTER_REASONS)})"
        )
    settings = _settings_with_broker(broker)
    which = ReplayFilter(
        frozenset(reasons) if reasons else None,
        lead_id,
        None if since is None else int(since.replace(tzinfo=UTC).timestamp() * 1000),
        None if until is None else int(until.replace(tzinfo=UTC).timestamp() * 1000),
    )
    counts = asyncio.run(
        replay_dead_letters(
            settings.bootstrap_servers(),
            settings.dlq_topic,
            settings.leads_topic,
            which,
            dry_run,
            settings.kafka_security(),
        )
    )
    skipped = (NOT_REPLAYED_TRUNCATED, ALREADY_REPLAYED, NOT_REPLAYED_NOTICE)
    total = sum(n for reason, n in counts.items() if reason not in skipped)
    detail = ", ".join(f"{n} {reason or 'no reason'}" for reason, n in sorted(counts.items()))
    verb = "would replay" if dry_run else "replayed"
    elsewhere = READ_BACK_WHERE_FROM & counts.keys()
    click.echo(
        f"{verb} {total} record(s) to {settings.leads_topic}"
        + (" (those that were never leads to the topics they were read from)" if elsewhere else "")
        + (f": {detail}" if detail else ""),
        err=True,
    )


def _read_events(
    broker: str | None,
    which: str,
    follow: bool,
    from_end: bool = False,
    wanted: Any = None,
) -> None:
    from streams.cli.console import Wanted, dead_letter, decoded_events, read_records, to_json_line

    settings = _settings_with_broker(broker)
    topic = {
        "events": settings.events_topic,
        "outcomes": settings.outcomes_topic,
        "dlq": settings.dlq_topic,
        "control": settings.control_topic,
        "admin": settings.admin_topic,
        "feedback": settings.feedback_events_topic,
    }[which]
    bootstrap = settings.bootstrap_servers()
    security = settings.kafka_security()
    wanted = wanted or Wanted()

    async def run() -> None:
        if which == "dlq":
            records = read_records(
                bootstrap, topic, follow=follow, security=security, from_end=from_end
            )
            async for record in records:
                if wanted.dead_letter(record):
                    click.echo(to_json_line(dead_letter(record)))
            return
        async for event in decoded_events(
            bootstrap,
            topic,
            follow=follow,
            registry_url=settings.schema_registry_url,
            security=security,
            from_end=from_end,
        ):
            if wanted.event(event):
                click.echo(to_json_line(event))

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


which_option = click.option(
    "--topic",
    "which",
    type=click.Choice(["events", "outcomes", "dlq", "control", "admin", "feedback"]),
    default="events",
    show_default=True,
    help="Per-attempt events, lead-level outcomes, dead letters, circuit changes, operators' "
    "actions, or recipients' feedback as judged (returns and their credits).",
)


@main.command()
@broker_option
@which_option
@click.option("--follow", "-f", is_flag=True, help="Keep reading new events.")
def events(broker: str | None, which: str, follow: bool) -> None:
    """Print decoded delivery events as JSON lines, as billing sees them."""
    _read_events(broker, which, follow)


@main.command()
@broker_option
@click.option("--port", type=int, help="Web port of the API (env COURIER_WEB_PORT; 6067).")
@click.option(
    "--destinations",
    type=click.Path(path_type=Path),
    help="The workers' file: its alert rules and schedules (defaults without one).",
)
def insight(broker: str | None, port: int | None, destinations: Path | None) -> None:
    """Keep every lead's history, the dashboard's numbers and the alerts (from what the
    workers write); answer /api/leads/ID and /dashboard. Run as many as the topics have
    partitions."""
    settings = _settings_with_broker(broker, web_port=port, destinations=destinations)
    loaded = None
    if destinations is not None or settings.destinations.exists():
        loaded = load_destinations(settings.destinations)
    use_event_loop(settings.event_loop)
    tune_gc(settings.gc_young)
    from streams.app import worker_class
    from streams.cli.console import reach_broker
    from streams.insight.app import create_insight_app
    from streams.live_config import ensure_config_topic
    from streams.topics import written_topics

    asyncio.run(reach_broker(settings.bootstrap_servers(), settings.kafka_security()))
    # The workers' topics it reads and the alerts topic it writes, made before Faust starts
    # (as the worker does): a topic made after the group joined makes Tansu rebalance it,
    # and one that does not exist yet is not read until the next metadata refresh.
    _make_topics(settings, {**written_topics(settings), settings.alerts_topic: {}})
    # Its alert rules and schedules follow the workers' configuration versions.
    asyncio.run(
        ensure_config_topic(
            settings.bootstrap_servers(), settings.config_topic, settings.replication,
            settings.kafka_security(),
        )
    )  # fmt: skip
    idempotent = _idempotent_producer(settings)
    app = create_insight_app(settings, loaded, idempotent_producer=idempotent)
    click.echo(
        f"courier: insight on {settings.web_bind}:{settings.web_port or 6067} "
        f"(/api/leads/ID), history kept {settings.history_days:g} day(s) after a lead's "
        "last record; producer " + ("idempotent" if idempotent else "not idempotent"),
        err=True,
    )
    worker = worker_class(settings.log_format)
    worker(app, loglevel=settings.log_level, quiet=True).execute_from_commandline()


@main.command()
@click.argument("lead_id")
@click.option("--api", help="An insight worker's URL (env COURIER_API_URL).")
@click.option("--json", "as_json", is_flag=True, help="The history as JSON, as the API gives it.")
def lead(lead_id: str, api: str | None, as_json: bool) -> None:
    """What happened to one lead: every attempt, its outcome, its dead letters."""
    from streams.insight.history import timeline

    settings = _settings(api_url=api)
    answer = asyncio.run(_lead_history(settings, lead_id))
    if as_json:
        click.echo(orjson.dumps(answer).decode())
        return
    for line in timeline(lead_id, answer["history"]):
        click.echo(line)


async def _lead_history(settings: Settings, lead_id: str) -> dict[str, Any]:
    from urllib.parse import quote

    import aiohttp

    headers = {}
    if settings.api_token is not None:
        headers["Authorization"] = f"Bearer {settings.api_token.get_secret_value()}"
    url = f"{settings.api_url.rstrip('/')}/api/leads/{quote(lead_id, safe='')}"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
            session.get(url, headers=headers) as res,
        ):
            body = await res.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        _fail(
            f"cannot ask {settings.api_url} ({type(exc).__name__}): is `courier insight` running?"
        )
    if res.status != 200 or not isinstance(body, dict):
        reason = body.get("error") if isinstance(body, dict) else None
        _fail(f"{settings.api_url} answered HTTP {res.status}" + (f": {reason}" if reason else ""))
    return body


@main.command()
@broker_option
@click.option("--since", default="24h", show_default=True, help="A period: 30m, 24h, 7d.")
@click.option("--format", "form", type=click.Choice(["table", "csv", "json"]), default="table")
@click.option(
    "--by",
    type=click.Choice(["destination", "source"]),
    default="destination",
    show_default=True,
    help="A row per destination, or per lead source (source.name).",
)
def report(broker: str | None, since: str, form: str, by: str) -> None:
    """Per destination (or per lead source) over a period: leads, attempts, accepted,
    rejected (top reasons), errors, timeouts, revenue, returns, net revenue, conversions,
    recipient latency p50/p95."""
    from streams.cli.console import decoded_events
    from streams.insight.report import parse_period, render, summarize

    try:
        period = parse_period(since)
    except ValueError as exc:
        _fail(f"--since: {exc}")
    settings = _settings_with_broker(broker)
    start = datetime.now(UTC) - period

    async def period_of(topic: str, kind: str, at: str) -> list[dict[str, Any]]:
        found = decoded_events(
            settings.bootstrap_servers(),
            topic,
            follow=False,
            registry_url=settings.schema_registry_url,
            security=settings.kafka_security(),
            since_ms=int(start.timestamp() * 1000),
        )
        return [e async for e in found if e.get("type") == kind and e[at] >= start]

    async def both() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return (
            await period_of(settings.events_topic, "DeliveryEvent", "finished_at"),
            # Returns and conversions judged in the period, of sales in it or before.
            await period_of(settings.feedback_events_topic, "LeadFeedback", "received_at"),
        )

    events, feedback = asyncio.run(both())
    click.echo(render(summarize(events, by, feedback), form, by))


@main.command()
@broker_option
@which_option
@click.option("--from-beginning", is_flag=True, help="Everything on the topic, then new ones.")
@click.option("--lead", "lead_id", help="Only this lead's.")
@click.option("--destination", help="Only this destination's (outcomes: any that it was in).")
@click.option("--outcome", help="Only this outcome: success, failure, error, skip; delivered…")
def tail(
    broker: str | None,
    which: str,
    from_beginning: bool,
    lead_id: str | None,
    destination: str | None,
    outcome: str | None,
) -> None:
    """Print events as they are written, until Ctrl-C: from now on, or --from-beginning."""
    from streams.cli.console import Wanted

    wanted = Wanted(lead_id, destination, outcome)
    _read_events(broker, which, True, from_end=not from_beginning, wanted=wanted)


@main.command()
@click.argument("file", required=False, type=click.Path(path_type=Path))
@click.option("--destinations", type=click.Path(path_type=Path), help="Destinations YAML.")
@click.option(
    "--no-secrets",
    is_flag=True,
    help="Check everything but the secrets' values (${env:}/${file:} not set here: CI).",
)
def check(file: Path | None, destinations: Path | None, no_secrets: bool) -> None:
    """Validate a destinations file (FILE, or --destinations, or the worker's:
    COURIER_DESTINATIONS) and report every problem with its path."""
    if file is not None and destinations is not None and file != destinations:
        _fail(f"two files to check: {file} and --destinations {destinations}; name one")
    settings = _settings(destinations=file or destinations)
    with without_secret_values() if no_secrets else contextlib.nullcontext():
        loaded = load_destinations(settings.destinations)
    unused = set(in_no_flow([d.id for d in loaded.destinations], loaded.compiled_flows))
    for dest in loaded.destinations:
        state = "" if dest.enabled else " (disabled)"
        if dest.id in unused:
            state += " (in no flow: never sent a lead)"
        click.echo(f"{dest.id}: {dest.integration} {dest.method} {dest.url}{state}")
    for flow_id in unreachable(loaded.compiled_flows):
        click.echo(
            f"flow {flow_id}: never chosen (a flow before it has no 'when': it takes every lead)"
        )


@main.group()
def admin() -> None:
    """Act on a destination in every running worker, with an audit trail: pause, resume,
    reset its circuit; list what was done (the control topic keeps each action)."""


def _act(verb: str, destination_id: str, reason: str, by: str | None, broker: str | None) -> None:
    from streams.cli.console import control_state
    from streams.control.admin import states_around
    from streams.kafka_clients import send_admin_action
    from streams.stages.events import admin_action

    settings = _settings_with_broker(broker)
    if settings.destinations.exists():
        # Only its ids are needed: the workers' secrets need not be in this shell.
        with without_secret_values():
            known = load_destinations(settings.destinations).by_id()
        if destination_id not in known:
            _fail(f"no destination {destination_id!r} in {settings.destinations}")
    who = by or _operator()
    record = admin_action(verb, destination_id, who, reason)
    bootstrap, security = settings.bootstrap_servers(), settings.kafka_security()
    registry = settings.schema_registry_url
    admin, circuits = asyncio.run(
        control_state(
            bootstrap,
            settings.admin_topic,
            settings.control_topic,
            registry_url=registry,
            security=security,
        )
    )
    record["before"], record["after"] = states_around(admin, record, circuits.get(destination_id))
    asyncio.run(
        send_admin_action(
            bootstrap, settings.admin_topic, record, registry_url=registry, security=security
        )
    )
    click.echo(
        f"{destination_id}: {verb.replace('_', ' ')} by {who}, sent to every worker "
        f"({record['before']} → {record['after']})"
    )


def _operator() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # a container's user without a name
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


reason_option = click.option("--reason", default="", help="Why (kept in the audit trail).")
by_option = click.option("--by", help="Who is acting (default: user@host).")


@admin.command()
@click.argument("destination_id")
@reason_option
@by_option
@broker_option
def pause(destination_id: str, reason: str, by: str | None, broker: str | None) -> None:
    """Stop delivering to DESTINATION_ID: a waterfall moves on, a lead with nowhere else to
    go waits for the resume (up to a week)."""
    _act("pause", destination_id, reason, by, broker)


@admin.command()
@click.argument("destination_id")
@reason_option
@by_option
@broker_option
def resume(destination_id: str, reason: str, by: str | None, broker: str | None) -> None:
    """Deliver to DESTINATION_ID again; leads held for the pause go at once."""
    _act("resume", destination_id, reason, by, broker)


@admin.command(name="reset-circuit")
@click.argument("destination_id")
@reason_option
@by_option
@broker_option
def reset_circuit(destination_id: str, reason: str, by: str | None, broker: str | None) -> None:
    """Close DESTINATION_ID's circuit now, without waiting for its cool-down."""
    _act("reset_circuit", destination_id, reason, by, broker)


@admin.command(name="open-circuit")
@click.argument("destination_id")
@reason_option
@by_option
@broker_option
def open_circuit(destination_id: str, reason: str, by: str | None, broker: str | None) -> None:
    """Open DESTINATION_ID's circuit now, as if it had failed: its leads move on or wait,
    and after the cool-down one lead tries it again."""
    _act("open_circuit", destination_id, reason, by, broker)


@admin.command()
@click.argument("destination_id")
@reason_option
@by_option
@broker_option
def drain(destination_id: str, reason: str, by: str | None, broker: str | None) -> None:
    """End the work waiting for DESTINATION_ID (parked retries, leads held for a pause,
    its hours or its circuit): each ends without a request, as a skip saying who drained
    it, and its lead's plan moves on (a waterfall's next destination)."""
    _act("drain", destination_id, reason, by, broker)


@admin.command(name="log")
@click.option("--destination", "destination_id", help="Only this destination's actions.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of a table.")
@broker_option
def admin_log(destination_id: str | None, as_json: bool, broker: str | None) -> None:
    """Every action taken, oldest first, and what is paused now."""
    from streams.cli.console import admin_actions, to_json_line

    settings = _settings_with_broker(broker)
    actions = asyncio.run(
        admin_actions(
            settings.bootstrap_servers(),
            settings.admin_topic,
            registry_url=settings.schema_registry_url,
            security=settings.kafka_security(),
        )
    )
    actions = [a for a in actions if destination_id in (None, a["destination_id"])]
    if as_json:
        for action in actions:
            click.echo(to_json_line(action))
        return
    paused: dict[str, dict[str, Any]] = {}
    for action in actions:
        at = action["at"].strftime("%Y-%m-%d %H:%M:%S")
        verb = action["action"].replace("_", " ")
        reason = action["reason"] or "-"
        change = f"  [{action['before']} → {action['after']}]" if action.get("after") else ""
        click.echo(
            f"{at}Z  {action['destination_id']:<20} {verb:<14} {action['by']:<24} {reason}{change}"
        )
        if action["action"] == "pause":
            paused[action["destination_id"]] = action
        elif action["action"] == "resume":
            paused.pop(action["destination_id"], None)
    if not actions:
        click.echo("no actions yet")
    click.echo("paused now: " + (", ".join(sorted(paused)) or "none"))


@main.group(name="config")
def config_group() -> None:
    """Live configuration: versions of the destinations file on the config topic. Every
    worker switches to a new version between leads, without a restart."""


def _versions(settings: Settings) -> list[ConfigVersion]:
    from streams.live_config import config_versions

    return asyncio.run(
        config_versions(
            settings.bootstrap_servers(), settings.config_topic, settings.kafka_security()
        )
    )


def _publish(settings: Settings, text: str, by: str | None, note: str, source: str) -> int:
    from streams.live_config import publish_version

    return asyncio.run(
        publish_version(
            settings.bootstrap_servers(), settings.config_topic, text,
            by=by or _operator(), note=note, source=source,
            replication=settings.replication, security=settings.kafka_security(),
        )
    )  # fmt: skip


note_option = click.option("--note", default="", help="Why (kept with the version).")


@config_group.command(name="apply")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@note_option
@by_option
@broker_option
def config_apply(file: Path, note: str, by: str | None, broker: str | None) -> None:
    """Validate FILE (every problem at once) and publish it as the next version."""
    from streams.config.versions import changes, destinations_in, load_text

    settings = _settings_with_broker(broker)
    text = file.read_text(encoding="utf-8")
    try:
        # The workers resolve ${env:}/${file:} references in their own environment.
        with without_secret_values():
            new = load_text(text, str(file))
    except ConfigError as exc:
        _fail(f"{exc}\nnothing was published")
    versions = _versions(settings)
    if versions and versions[-1].text == text:
        click.echo(f"{file} is v{versions[-1].number} already: nothing published")
        return
    before: dict[str, str] = {}
    if versions:
        with contextlib.suppress(ConfigError), without_secret_values():
            before = destinations_in(load_text(versions[-1].text, "running"))
    number = _publish(settings, text, by, note, "apply")
    click.echo(f"v{number}: {changes(before, destinations_in(new))}; every worker takes it")


@config_group.command(name="history")
@click.option("--diff", "with_diff", is_flag=True, help="Each version's lines changed.")
@broker_option
def config_history(with_diff: bool, broker: str | None) -> None:
    """Every version, oldest first: number, when, who, why, what changed."""
    from streams.config.versions import text_diff

    previous: ConfigVersion | None = None
    for version, changed in _with_changes(_versions(_settings_with_broker(broker))):
        at = version.at.strftime("%Y-%m-%d %H:%M:%S")
        note = f" ({version.note})" if version.note else ""
        click.echo(f"v{version.number}  {at}Z  {version.source:<8} {version.by}{note}: {changed}")
        if with_diff:
            for line in text_diff(previous, version):
                click.echo(f"    {line}")
        previous = version
    if previous is None:
        click.echo("no versions yet (a worker publishes its file when it starts)")


def _with_changes(versions: list[ConfigVersion]) -> list[tuple[ConfigVersion, str]]:
    """Each version with what it changed from the one before (destinations by id)."""
    from streams.config.versions import changes, destinations_in, load_text

    before: dict[str, str] = {}
    found = []
    for version in versions:
        try:
            with without_secret_values():
                now = destinations_in(load_text(version.text, f"v{version.number}"))
            found.append((version, changes(before, now)))
            before = now
        except ConfigError:
            found.append((version, "refused by this version of courier"))
    return found


@config_group.command(name="show")
@click.argument("number", type=int, required=False)
@broker_option
def config_show(number: int | None, broker: str | None) -> None:
    """Print version NUMBER as it was applied (default: the last)."""
    click.echo(_version(_settings_with_broker(broker), number).text, nl=False)


def _version(settings: Settings, number: int | None) -> ConfigVersion:
    versions = _versions(settings)
    if not versions:
        _fail("no versions yet on " + settings.config_topic)
    if number is None:
        return versions[-1]
    found = [v for v in versions if v.number == number]
    if not found:
        _fail(f"no version {number}: there are v{versions[0].number} to v{versions[-1].number}")
    return found[0]


@config_group.command(name="rollback")
@click.argument("number", type=int)
@note_option
@by_option
@broker_option
def config_rollback(number: int, note: str, by: str | None, broker: str | None) -> None:
    """Publish version NUMBER again, as the next version."""
    settings = _settings_with_broker(broker)
    old = _version(settings, number)
    published = _publish(settings, old.text, by, note or f"rollback to v{number}", "rollback")
    click.echo(f"v{published}: v{number} again; every worker takes it")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of a table.")
@broker_option
def audit(as_json: bool, broker: str | None) -> None:
    """Every change operators made, oldest first: actions on destinations (``courier
    admin``, the API: who, why, the state before and after) and versions of the
    configuration (``courier config``: who, why, what changed)."""
    from streams.cli.console import admin_actions, to_json_line

    settings = _settings_with_broker(broker)
    actions = asyncio.run(
        admin_actions(
            settings.bootstrap_servers(), settings.admin_topic,
            registry_url=settings.schema_registry_url, security=settings.kafka_security(),
        )
    )  # fmt: skip
    entries: list[dict[str, Any]] = [
        {"at": a["at"], "kind": "admin", "by": a["by"], "what": f"{a['destination_id']}: "
         f"{a['action'].replace('_', ' ')}", "why": a["reason"],
         "change": f"{a['before']} → {a['after']}" if a.get("after") else ""}
        for a in actions
    ]  # fmt: skip
    entries += [
        {"at": v.at, "kind": "config", "by": v.by, "what": f"v{v.number} ({v.source})",
         "why": v.note, "change": changed}
        for v, changed in _with_changes(_versions(settings))
    ]  # fmt: skip
    entries.sort(key=lambda entry: entry["at"])
    for entry in entries:
        if as_json:
            click.echo(to_json_line(entry))
            continue
        at = entry["at"].astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        why = f" ({entry['why']})" if entry["why"] else ""
        change = f": {entry['change']}" if entry["change"] else ""
        click.echo(f"{at}Z  {entry['kind']:<6} {entry['by']:<24} {entry['what']}{why}{change}")
    if not entries and not as_json:
        click.echo("nothing yet")


@main.group()
def destinations() -> None:
    """Work with the destinations file."""


SAMPLE_LEAD = {
    "id": "courier-test-lead",
    "submission": {"timestamp": "2026-01-01T12:00:00Z"},
    "source": {"name": "courier-test", "type": "test"},
    "lead": {
        "first_name": "Test",
        "last_name": "Lead",
        "email": "test.lead@example.com",
        "phone_1": "2015550123",
        "state": "CA",
        "zip": "94105",
    },
}


@destinations.command(name="test")
@click.argument("name")
@click.option("--destinations", "path", type=click.Path(path_type=Path), help="Destinations YAML.")
@click.option("--lead", "lead_file", type=click.File("rb"), help="Lead JSON (default: a sample).")
@click.option("--dry-run", is_flag=True, help="Show the request, masked; send nothing.")
@click.option("--ping-only", is_flag=True, help="A ping-post buyer: ping it, do not post.")
def test_destination(
    name: str, path: Path | None, lead_file: Any, dry_run: bool, ping_only: bool
) -> None:
    """Send one lead to destination NAME and show the request and the outcome (a ping-post
    buyer: its ping and bid first, then the post with that bid)."""
    from streams.cli.try_destination import run_destination_test

    settings, destination = _one_destination(path, name)
    raw = lead_file.read() if lead_file is not None else orjson.dumps(SAMPLE_LEAD)
    egress = settings.egress_policy()
    proxy = settings.forward_proxy()
    tried = run_destination_test(destination, raw, dry_run, _say, egress, ping_only, proxy)
    sys.exit(asyncio.run(tried))


@main.command(name="map")
@click.option("--destinations", type=click.Path(path_type=Path), help="Destinations YAML.")
@click.option("--destination", "destination_id", required=True, help="Destination id.")
@click.option("--lead", "lead_file", type=click.File("rb"), required=True, help="Lead JSON.")
def map_lead(destinations: Path | None, destination_id: str, lead_file: Any) -> None:
    """Dry run: print the payload a destination would receive for a lead; send nothing."""
    from streams.stages.attempt import invalid_data
    from streams.stages.envelope import Rejected, parse_envelope

    settings, destination = _one_destination(destinations, destination_id)
    lead = parse_envelope(lead_file.read(), settings.max_lead_bytes)
    if isinstance(lead, Rejected):
        _fail(f"{lead_file.name}: {lead.reason}: {lead.detail}")
        return
    try:
        payload = destination.compiled_mapping.apply(lead)
    except MappingError as exc:
        for problem in destination.compiled_mapping.problems(lead) or [exc]:
            click.echo(f"courier: lead {lead.id}: {invalid_data(problem).raw}", err=True)
        sys.exit(1)
    click.echo(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode())


@main.command()
@click.option("--port", type=int, help="Port on 127.0.0.1 (default: a free one).")
def broker(port: int | None) -> None:
    """Run the embedded broker alone (until Ctrl-C), for worker, publish and events."""
    embedded = EmbeddedBroker(port)
    try:
        embedded.start()
    except BrokerError as exc:
        _fail(str(exc))
    click.echo(f"courier: embedded broker (Tansu, memory only) at {embedded.url}", err=True)
    click.echo(f"export COURIER_BROKER={embedded.url}")
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    # Blocked, so sigwait receives them instead of Python's default handlers.
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    try:
        signal.sigwait(stop_signals)
    finally:
        embedded.stop()


@main.command()
@click.option("--leads", "count", default=40, show_default=True, help="How many sample leads.")
@click.option(
    "--auction",
    is_flag=True,
    help="Sell the leads by ping-post to three demo buyers, then return one (signed feedback).",
)
def demo(count: int, auction: bool) -> None:
    """Start broker, demo recipient and worker; deliver sample leads; print what happened."""
    from streams.cli.auction_demo import run_auction_demo
    from streams.cli.demo import run_demo

    try:
        sys.exit(asyncio.run(run_auction_demo(count) if auction else run_demo(count)))
    except BrokerError as exc:
        _fail(str(exc))


def _one_destination(path: Path | None, name: str) -> tuple[Settings, Destination]:
    """Settings and the destination called ``name``, or exit 2 saying what is wrong."""
    settings = _settings(destinations=path)
    loaded = load_destinations(settings.destinations)
    by_id = {d.id: d for d in loaded.destinations}
    if name not in by_id:
        _fail(f"no destination {name!r} (known: {', '.join(sorted(by_id))})")
    return settings, by_id[name]


def _settings_with_broker(broker: str | None, **overrides: Any) -> Settings:
    settings = _settings(broker=broker, **overrides)
    if settings.broker is None:
        raise ConfigError("settings", ["broker: give --broker or set COURIER_BROKER"])
    return settings
