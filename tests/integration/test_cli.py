"""What a user types: courier demo, publish, events, check, and a worker given a bad file."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.integration.auction_buyers import AuctionBuyers, Buyer
from tests.integration.conftest import collect
from tests.integration.kafka import KafkaTarget
from tests.integration.recipients import Recipient


def courier(*args: str, env: dict[str, str] | None = None, timeout: float = 180) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def test_demo_delivers_prints_a_table_and_leaves_nothing_running() -> None:
    # As a newcomer runs it: the default egress policy (the suite's override removed).
    env = {k: v for k, v in os.environ.items() if k != "COURIER_EGRESS"}
    result = await asyncio.to_thread(courier, "demo", "--leads", "10", env=env)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "embedded broker at kafka://127.0.0.1:" in out
    for column in ("lead", "destination", "outcome", "reason", "HTTP", "ms"):
        assert column in out
    assert "L-0001" in out and "L-0010" in out
    assert "Duplicate lead" in out  # the demo CRM refuses every 5th lead
    # A row per lead (what billing reads), the outcome kinds explained, the dead letters.
    assert re.search(r"^L-0001\s+(delivered|not_delivered)\s", out, re.MULTILINE)
    assert re.search(r"^10 leads: \d+ delivered, \d+ not; \d+ delivery attempts", out, re.M)
    assert "outcomes: success = accepted; failure = refused" in out
    assert "2 record(s) in the dead-letter topic: 1 'Missing id', 1 'Not JSON'." in out
    # Its own broker, not any other on this machine: nothing may answer on its port.
    port = re.search(r"embedded broker at kafka://127\.0\.0\.1:(\d+)", out)
    assert port is not None
    assert not listening(int(port.group(1))), "the demo left its broker running"


async def test_auction_demo_sells_to_the_best_bid_and_credits_a_signed_return() -> None:
    """`courier demo --auction`: ping-post to three buyers, a refused post, the floor, a
    ping past its timeout, the else; then a signed return credited, two refused."""
    env = {k: v for k, v in os.environ.items() if k != "COURIER_EGRESS"}
    result = await asyncio.to_thread(courier, "demo", "--auction", "--leads", "10", env=env)
    assert result.returncode == 0, result.stderr + result.stdout
    out = result.stdout

    def row(lead: str) -> list[str]:
        found = re.search(rf"^{lead}  .*$", out, re.MULTILINE)
        assert found is not None, out
        return re.split(r"\s{2,}", found.group(0))

    # NY, 360,000: bright_lending bids highest and refuses the post; the next bid wins.
    assert row("A-0003")[3:] == [
        "acme_loans no bid, bright_lending 59.80, cove_finance 46.80",
        "bright_lending (Loan amount over our limit)",
        "cove_finance",
        "46.80",
    ]
    # FL, 20,000: both bids under the floor: the flow's else.
    assert "12.00 (under floor)" in row("A-0007")[3] and row("A-0007")[5] == "house_crm"
    # WA: cove_finance answers after the auction closed; nobody else buys there.
    assert "cove_finance ping timed out" in row("A-0004")[3] and row("A-0004")[5] == "house_crm"
    assert row("A-0001")[5:] == ["acme_loans", "23.00"]
    # The returns, judged by the worker.
    assert re.search(
        r"acme_loans returns A-0001 \(signed\)\s+202\s+accepted\s+Bad phone\s+23\.00", out
    )
    assert re.search(r"acme_loans returns A-0001 \(unsigned\)\s+401\s+-", out)
    assert re.search(
        r"returns A-\d+ \(not theirs\)\s+202\s+refused\s+Not accepted by this destination", out
    )
    port = re.search(r"embedded broker at kafka://127\.0\.0\.1:(\d+)", out)
    assert port is not None
    assert not listening(int(port.group(1))), "the demo left its broker running"


async def test_publish_then_events_show_what_billing_sees(
    kafka: Any, recipient: Recipient, topics: Any, start_worker: Any, tmp_path: Path
) -> None:
    start_worker(f"destinations:\n  - id: crm\n    url: {recipient.url()}\n")
    leads = tmp_path / "leads.jsonl"
    lines = [
        orjson.dumps({"id": f"C-{i}", "lead": {"email": f"c{i}@example.com"}}) for i in range(3)
    ]
    leads.write_bytes(b"\n".join([*lines, b"this line is not json"]) + b"\n")
    broker = ["--broker", kafka.url]
    env = {
        **os.environ,
        "COURIER_LEADS_TOPIC": topics.leads,
        "COURIER_EVENTS_TOPIC": topics.events,
        "COURIER_OUTCOMES_TOPIC": topics.outcomes,
        "COURIER_DLQ_TOPIC": topics.dlq,
    }

    published = await asyncio.to_thread(courier, "publish", str(leads), *broker, env=env)
    assert published.returncode == 0, published.stderr
    assert "published 4 lead(s)" in published.stderr
    await recipient.wait_for(3)

    async def read(topic: str, count: int) -> list[dict[str, Any]]:
        # `events` reads to the end and stops; the worker may still be writing, so ask again.
        for _ in range(60):
            result = await asyncio.to_thread(courier, "events", "--topic", topic, *broker, env=env)
            assert result.returncode == 0, result.stderr
            rows = [orjson.loads(line) for line in result.stdout.splitlines()]
            if len(rows) >= count:
                return rows
            await asyncio.sleep(0.5)
        raise AssertionError(f"{topic}: fewer than {count} records")

    events = await read("events", 3)
    assert sorted(e["lead_id"] for e in events) == ["C-0", "C-1", "C-2"]
    assert {e["outcome"] for e in events} == {"success"}
    outcomes = await read("outcomes", 3)
    assert {o["outcome"] for o in outcomes} == {"delivered"}
    (dead,) = await read("dlq", 1)
    assert dead["reason"] == "Not JSON"
    assert "this line is not json" in orjson.dumps(dead).decode()


def test_a_bad_destinations_file_stops_the_worker_with_one_line_per_problem(
    tmp_path: Path,
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "destinations:\n"
        "  - id: crm\n    url: http://crm.example.com/x\n"
        "  - id: buyer\n    url: https://b.example.com\n    headers: {Authorization: Basic x}\n"
    )
    for command in ("worker", "check"):
        result = courier(command, "--destinations", str(bad), timeout=30)
        assert result.returncode == 2
        assert "Traceback" not in result.stderr
        assert f"{bad}: destinations[0].url: plain http" in result.stderr
        assert f"{bad}: destinations[1].headers.Authorization: credentials" in result.stderr


def test_map_prints_the_payload_without_sending(tmp_path: Path) -> None:
    destinations = tmp_path / "d.yaml"
    destinations.write_text(
        """
destinations:
  - id: acme
    url: https://crm.example.invalid/leads
    mapping:
      name: "{{first_name}} {{last_name}}"
      phone: {from: phone_1, type: phone, format: "(###) ###-####"}
      yearly: "{{lead.income * 12}}"
    rules: ["if lead.income > 1000 then tier = 'A' else tier = 'B'"]
  - id: strict
    url: https://crm.example.invalid/leads
    mapping:
      email: {from: email, required: true}
      phone: {from: phone_1, type: phone, format: E164}
      income: {from: income, type: number}
      age: {from: first_name, type: number}
      zip: {from: zip, required: true}
"""
    )
    lead = tmp_path / "lead.json"
    lead.write_bytes(
        orjson.dumps(
            {
                "id": "L-7",
                "lead": {
                    "first_name": "Ada",
                    "last_name": "L",
                    "phone_1": "5550101234",
                    "income": "1,250.50",
                },
            }
        )
    )
    args = ("map", "--destinations", str(destinations), "--lead", str(lead))

    result = courier(*args, "--destination", "acme", timeout=30)
    assert result.returncode == 0, result.stderr
    assert orjson.loads(result.stdout) == {
        "name": "Ada L",
        "phone": "(555) 010-1234",
        "yearly": 15006,
        "tier": "A",
    }

    refused = courier(*args, "--destination", "strict", timeout=30)
    assert refused.returncode == 1
    # Every problem of the lead at once (a delivery stops at the first).
    assert refused.stderr.splitlines() == [
        "courier: lead L-7: Invalid data: email is required",
        "courier: lead L-7: Invalid data: first_name: not a number",
        "courier: lead L-7: Invalid data: zip is required",
    ]

    unknown = courier(*args, "--destination", "nope", timeout=30)
    assert unknown.returncode == 2
    assert "known: acme, strict" in unknown.stderr


async def test_destinations_test_pings_a_buyer_then_posts_with_its_bid(tmp_path: Path) -> None:
    """A ping-post buyer is tried as an auction tries it: the ping (no contact data), its
    bid read, then the post carrying the bid's id; --ping-only stops at the bid."""
    buyers = await AuctionBuyers(
        keen=Buyer(Decimal("1.0")), away=Buyer(Decimal("1.0"), states=frozenset({"TX"}))
    ).start()
    base = buyers.url("").rstrip("/")
    destinations = tmp_path / "d.yaml"
    destinations.write_text(
        "destinations:"
        + "".join(
            f"""
  - id: {name}
    url: {base}/{name}/post
    mapping: {{lead_id: id, bid_id: "{{{{appended.{name}.bid_id}}}}", email: email}}
    ping:
      url: {base}/{name}/ping
      mapping: {{state: state, loan_amount: {{from: loan_amount, type: number}}}}
"""
            for name in ("keen", "away")
        )
    )

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        test = ("destinations", "test", "--destinations", str(destinations))
        return courier(*test, *args, timeout=30)

    try:
        dry = await asyncio.to_thread(run, "keen", "--dry-run")
        assert dry.returncode == 0, dry.stdout + dry.stderr
        ping, post = dry.stdout.split("post (with a stand-in bid")
        assert f"POST {base}/keen/ping" in ping and '{"state":"CA"}' in ping
        assert '"bid_id":"bid-id-of-the-ping"' in post and "test.lead@example.com" in post
        assert buyers.requests == []

        only = await asyncio.to_thread(run, "keen", "--ping-only")
        assert only.returncode == 0, only.stdout + only.stderr
        assert re.search(r"^bid: 20\.00, bid id: keen-1, valid until ", only.stdout, re.M)
        assert "post:" not in only.stdout and buyers.buyers["keen"].posts == []

        sold = await asyncio.to_thread(run, "keen")
        assert sold.returncode == 0, sold.stdout + sold.stderr
        assert "bid: 20.00, bid id: keen-2" in sold.stdout
        assert "outcome: success (accepted)" in sold.stdout.split("post:")[1]
        assert buyers.buyers["keen"].posts[0]["bid_id"] == "keen-2"
        assert buyers.buyers["keen"].sold == ["courier-test-lead"]

        none = await asyncio.to_thread(run, "away")
        assert none.returncode == 1
        assert "no bid" in none.stdout and "post:" not in none.stdout
        assert buyers.buyers["away"].posts == []
    finally:
        await buyers.stop()


async def test_destinations_test_sends_one_lead_and_dry_run_sends_none(
    recipient: Recipient, tmp_path: Path
) -> None:
    destinations = tmp_path / "d.yaml"
    destinations.write_text(
        f"""
destinations:
  - id: acme
    url: {recipient.url("/leads")}
    auth: {{type: api_key, value: "${{env:ACME_KEY}}"}}
    mapping: {{name: "{{{{first_name}}}} {{{{last_name}}}}", email: email}}
"""
    )
    env = {**os.environ, "ACME_KEY": "k-123"}
    args = ("destinations", "test", "acme", "--destinations", str(destinations))

    dry = await asyncio.to_thread(courier, *args, "--dry-run", env=env, timeout=30)
    assert dry.returncode == 0, dry.stderr
    assert "X-Api-Key: ****" in dry.stdout and "k-123" not in dry.stdout
    assert '"name":"Test Lead"' in dry.stdout
    assert recipient.requests == []

    sent = await asyncio.to_thread(courier, *args, env=env, timeout=30)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert "outcome: success (accepted) — Accepted" in sent.stdout
    assert "reference id: R-1" in sent.stdout
    assert "k-123" not in sent.stdout
    (received,) = recipient.requests
    assert received.headers["X-Api-Key"] == "k-123"
    assert received.json() == {"name": "Test Lead", "email": "test.lead@example.com"}


async def test_replay_republishes_dead_letters_by_reason(kafka: Any, topics: Any) -> None:
    from aiokafka import AIOKafkaProducer

    from streams.cli.console import read_records

    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap)
    await producer.start()
    dead = [
        (b"L-1", b'{"id": "L-1", "lead": {"notes": "long"}}', "Record too large"),
        (b"L-2", b"{broken", "Not JSON"),
        (b"L-3", b'{"id": "L-3", "lead": {}}', "Record too large"),
    ]
    try:
        for key, value, reason in dead:  # as the worker writes them (test_dead_letters.py)
            headers = [("courier.dlq.reason", reason.encode()), ("courier.dlq.offset", b"0")]
            await producer.send_and_wait(topics.dlq, value=value, key=key, headers=headers)
    finally:
        await producer.stop()
    env = {**os.environ, "COURIER_LEADS_TOPIC": topics.leads, "COURIER_DLQ_TOPIC": topics.dlq}

    result = await asyncio.to_thread(
        courier,
        "replay",
        "--broker",
        kafka.url,
        "--reason",
        "Record too large",
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "replayed 2 record(s)" in result.stderr
    replayed = [r async for r in read_records(kafka.bootstrap, topics.leads, follow=False)]
    assert sorted((r.key, r.value) for r in replayed) == [(k, v) for k, v, _ in dead if k != b"L-2"]

    async def replay(*args: str) -> Any:
        return await asyncio.to_thread(
            courier, "replay", "--broker", kafka.url, *args, env=env, timeout=60
        )

    # Taken once: the same replay again takes nothing.
    again = await replay("--reason", "Record too large")
    assert again.returncode == 0 and "replayed 0 record(s)" in again.stderr, again.stderr
    assert "2 not replayed: replayed before" in again.stderr
    # A dry run counts and publishes nothing; --lead takes one lead's.
    dry = await replay("--lead", "L-2", "--dry-run")
    assert dry.returncode == 0 and "would replay 1 record(s)" in dry.stderr, dry.stderr
    one = await replay("--lead", "L-2", "--until", "2000-01-01T00:00:00")
    assert "replayed 0 record(s)" in one.stderr, one.stderr  # written after 2000
    one = await replay("--lead", "L-2", "--since", "2000-01-01T00:00:00")
    assert "replayed 1 record(s)" in one.stderr and "1 Not JSON" in one.stderr, one.stderr
    leads = [r async for r in read_records(kafka.bootstrap, topics.leads, follow=False)]
    assert sorted(r.key for r in leads) == [b"L-1", b"L-2", b"L-3"]
    # A notice the feedback topic held goes back there (once its destination is set up),
    # not to the leads topic, where it was dead-lettered again as a lead it never was.
    notice = b'{"destination_id": "added_since", "lead_id": "L-9", "kind": "converted"}'
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap)
    await producer.start()
    try:
        headers = [("courier.dlq.reason", b"Unreadable feedback"),
                   ("courier.dlq.topic", topics.feedback.encode())]  # fmt: skip
        await producer.send_and_wait(topics.dlq, value=notice, key=b"L-9", headers=headers)
    finally:
        await producer.stop()
    back = await replay("--reason", "Unreadable feedback")
    assert "replayed 1 record(s)" in back.stderr, back.stderr
    assert "never leads to the topics they were read from" in back.stderr
    fed = [r async for r in read_records(kafka.bootstrap, topics.feedback, follow=False)]
    assert [(r.key, r.value) for r in fed] == [(b"L-9", notice)]
    leads = [r async for r in read_records(kafka.bootstrap, topics.leads, follow=False)]
    assert sorted(r.key for r in leads) == [b"L-1", b"L-2", b"L-3"]
    # A reason no dead letter has is refused, naming the known ones.
    wrong = await replay("--reason", "Record to large")
    assert wrong.returncode == 2
    assert "no dead letter has the reason 'Record to large'" in wrong.stderr
    assert "Record too large" in wrong.stderr


EXAMPLE_DESTINATIONS = str(Path(__file__).parents[2] / "helm/lead-courier/files/destinations.yaml")


@pytest.mark.parametrize(
    "command",
    [
        ["tail"],
        ["publish", "/dev/null"],
        ["replay"],
        ["worker", "--destinations", EXAMPLE_DESTINATIONS],
    ],
)
def test_an_unreachable_broker_is_one_line_and_exit_code_2(command: list[str]) -> None:
    with socket.socket() as sock:  # a port nobody listens on once this closes
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = courier(*command, "--broker", f"kafka://127.0.0.1:{port}", timeout=120)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("courier: cannot reach the Kafka broker")


@pytest.mark.parametrize(
    "command",
    [["lead", "L-1"], ["tail"], ["events"], ["report"], ["publish", "/dev/null"], ["worker"]],
)
def test_a_bad_setting_names_its_variable_in_one_problem_and_exit_code_2(
    command: list[str],
) -> None:
    """``courier lead`` printed a traceback for a bad ``COURIER_*`` value, and every
    command named the setting's field, not the variable the user had set."""
    env = {**os.environ, "COURIER_IN_FLIGHT": "many"}
    result = courier(*command, env=env, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "courier: invalid configuration (1 problem(s)):",
        "  settings: in_flight (COURIER_IN_FLIGHT): Input should be a valid integer, "
        "unable to parse string as an integer",
    ]


@pytest.mark.parametrize(
    "command", [["worker", "--destinations", EXAMPLE_DESTINATIONS], ["insight"]]
)
async def test_a_taken_web_port_or_an_unusable_data_dir_is_one_problem_and_exit_code_2(
    command: list[str], kafka: KafkaTarget, tmp_path: Path
) -> None:
    """Each was a traceback from inside the web server's or Faust's start."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for setting, problem in [
            (
                {"COURIER_WEB_PORT": str(port)},
                f"web_port (COURIER_WEB_PORT): 127.0.0.1:{port} cannot be served (Address "
                "already in use)",
            ),
            (
                {"COURIER_DATA_DIR": str(blocker / "data")},
                f"data_dir (COURIER_DATA_DIR): {blocker / 'data'} cannot hold the tables (Not "
                "a directory)",
            ),
        ]:
            env = {**os.environ, "COURIER_BROKER": kafka.url, **setting}
            result = courier(*command, env=env, timeout=120)
            assert result.returncode == 2, result.stderr
            assert "Traceback" not in result.stderr
            assert result.stderr.strip().splitlines()[-2:] == [
                "courier: invalid configuration (1 problem(s)):",
                f"  settings: {problem}",
            ]


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        # A check of several settings (TLS files, SASL) named the field but not the variable.
        ("COURIER_KAFKA_SSL_CA_FILE", "/nonexistent/ca.pem", "kafka_ssl_ca_file "
         "(COURIER_KAFKA_SSL_CA_FILE): /nonexistent/ca.pem is not a readable file"),
        # Set from a command that printed its line twice: aiokafka was given a host with a
        # newline in it and failed with "Unable to bootstrap".
        ("COURIER_BROKER", "kafka://127.0.0.1:9\nkafka://127.0.0.1:9", "broker "
         "(COURIER_BROKER): the address has a space, a line break or a control character "
         "(kafka://HOST:PORT[,HOST:PORT])"),
    ],
)  # fmt: skip
def test_a_setting_is_refused_by_its_variable_before_any_connection(
    variable: str, value: str, problem: str
) -> None:
    result = courier("tail", env={**os.environ, variable: value}, timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "courier: invalid configuration (1 problem(s)):",
        f"  settings: {problem}",
    ]


def test_a_bad_option_is_named_as_the_command_line_s() -> None:
    result = courier("worker", "--in-flight", "0", "--destinations", EXAMPLE_DESTINATIONS)
    assert result.returncode == 2, result.stderr
    assert "in_flight (command line): Input should be greater than or equal to 1" in (result.stderr)


async def test_publish_from_stdin_sends_each_line_as_it_arrives(kafka: KafkaTarget) -> None:
    topic = f"stdin-{uuid.uuid4().hex[:8]}"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "streams.cli", "publish", "-", "--broker", kafka.url, "--topic", topic),
        stdin=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdin is not None
    process.stdin.write(b'{"id": "S-1", "lead": {}}\n')
    await process.stdin.drain()
    # The input is still open: the first lead is on the topic all the same.
    [first] = await collect(kafka, topic, 1, timeout_s=60)
    assert first.key == b"S-1"
    process.stdin.write(b'{"id": "S-2", "lead": {}}\n')
    process.stdin.close()
    _, stderr = await process.communicate()
    assert process.returncode == 0, stderr
    assert [r.key for r in await collect(kafka, topic, 2, timeout_s=60)] == [b"S-1", b"S-2"]


async def test_publish_warns_of_lines_that_are_not_one_json_object(
    kafka: KafkaTarget, tmp_path: Path
) -> None:
    """A JSON array or a pretty-printed file went out line by line, silently, and came back
    as dead letters. Still published as they are (a test may want hostile records)."""
    topic = f"lines-{uuid.uuid4().hex[:8]}"
    leads = tmp_path / "leads.json"
    leads.write_text('{"id": "J-1", "lead": {}}\n[{"id": "J-2"}, {"id": "J-3"}]\n\n{\n')
    result = courier("publish", str(leads), "--broker", kafka.url, "--topic", topic)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"published 3 lead(s) to {topic}",
        "courier: warning: 2 of them are not a JSON object on one line (line 2, 4): the worker "
        "dead-letters them. A lead is one line of JSON; a JSON array or a pretty-printed file "
        "is not JSON lines",
    ]
    assert len(await collect(kafka, topic, 3, timeout_s=60)) == 3


def test_check_no_secrets_checks_a_file_whose_secrets_are_not_here(tmp_path: Path) -> None:
    path = tmp_path / "d.yaml"
    path.write_text(
        """
destinations:
  - id: crm
    url: https://crm.example.com/leads
    headers: {X-Api-Key: "${env:CRM_KEY_ONLY_IN_PRODUCTION}"}
  - id: hook
    integration: webhook
    url: https://hooks.example.com/in
    settings: {secret: "${file:/run/secrets/hook-only-in-production}"}
"""
    )
    strict = courier("check", "--destinations", str(path), timeout=60)
    assert strict.returncode == 2 and "is not set" in strict.stderr
    lenient = courier("check", "--no-secrets", "--destinations", str(path), timeout=60)
    assert lenient.returncode == 0, lenient.stderr
    assert "crm: json_post POST https://crm.example.com/leads" in lenient.stdout
    # The file as an argument, as a newcomer types it
    named = courier("check", "--no-secrets", str(path), timeout=60)
    assert named.returncode == 0, named.stderr
    assert named.stdout == lenient.stdout
    two = courier("check", str(path), "--destinations", str(tmp_path / "other.yaml"), timeout=60)
    assert two.returncode != 0 and "two files to check" in two.stderr

    with_flow = tmp_path / "flow.yaml"
    with_flow.write_text(path.read_text() + "flows:\n  - {id: main, plan: crm}\n")
    flowed = courier("check", "--no-secrets", str(with_flow), timeout=60)
    assert "hook: webhook POST https://hooks.example.com/in (in no flow: never sent a lead)" in (
        flowed.stdout
    )


@contextlib.contextmanager
def embedded_worker(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path, int]]:
    """``courier worker`` with no broker given, as a terminal starts it (its own session:
    the test's signals to the group are a terminal's); once ready: the process, its log
    and the embedded broker's port. Whatever the test leaves running of it is killed
    (its broker ends with it: parent-death signal)."""
    destinations = tmp_path / "destinations.yaml"
    destinations.write_text("destinations:\n  - id: crm\n    url: https://crm.example.com/leads\n")
    log_path = tmp_path / "worker.log"
    env = {k: v for k, v in os.environ.items() if k != "COURIER_BROKER"}
    env |= {"COURIER_DATA_DIR": str(tmp_path / "data"), "COURIER_LOG_LEVEL": "info"}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker", "--destinations", str(destinations)],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while "Worker ready" not in log_path.read_text(errors="replace"):
            assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        port = re.search(r"embedded broker at kafka://127\.0\.0\.1:(\d+)", log_path.read_text())
        assert port is not None
        yield process, log_path, int(port.group(1))
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def test_ctrl_c_stops_a_worker_then_its_embedded_broker_without_a_traceback(
    tmp_path: Path,
) -> None:
    # Reproduced first: the Ctrl-C reached the broker too, which ended at once; the worker
    # then spent a minute (mode's stop timeout) retrying it, with five tracebacks.
    with embedded_worker(tmp_path) as (process, log_path, port):
        os.killpg(process.pid, signal.SIGINT)  # what a terminal sends its foreground group
        assert process.wait(timeout=120) == 0
    log = log_path.read_text()
    assert "Traceback" not in log and "Error while stopping" not in log, log[-3000:]
    assert not listening(port), "the worker left its broker running"


def test_an_embedded_broker_ends_with_the_worker_that_started_it_even_if_killed(
    tmp_path: Path,
) -> None:
    with embedded_worker(tmp_path) as (process, _, port):
        process.kill()  # no chance to stop it: the broker is told by the kernel (Linux)
        process.wait()
    deadline = time.monotonic() + 30
    while listening(port) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not listening(port), "a killed worker's broker kept running"
