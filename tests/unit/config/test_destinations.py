"""A wrong destinations file stops start-up with one line per problem: file, path, reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from streams.config import Settings, load_destinations, parse_destinations
from streams.config.versions import load_text
from streams.errors import ConfigError
from streams.secrets import SCRUBBER, UNRESOLVED, without_secret_values
from tests.conftest import destination


def problems_of(document: Any) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_destinations(document, "dest.yaml")
    return caught.value.problems


def test_a_valid_file_loads_with_defaults(tmp_path: Path) -> None:
    path = tmp_path / "d.yaml"
    path.write_text("destinations:\n  - id: crm\n    url: https://crm.example.com/leads\n")
    (crm,) = load_destinations(path).destinations
    assert (crm.integration, crm.method, crm.enabled) == ("json_post", "POST", True)
    assert crm.timeouts.connect == 3.0


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"url": "http://crm.example.com/x"}, "destinations[0].url: plain http"),
        ({"url": "ftp://crm.example.com/x"}, "destinations[0].url:"),
        ({"id": "Bad Id"}, "destinations[0].id:"),
        ({"method": "DELETE"}, "destinations[0].method:"),
        (
            {"integration": "carrier_pigeon"},
            "destinations[0].integration: unknown 'carrier_pigeon'",
        ),
        ({"headers": {"Authorization": "Basic abc"}}, "destinations[0].headers.Authorization:"),
        ({"headers": {"X-Api-Key": "literal"}}, "destinations[0].headers.X-Api-Key:"),
        (
            {"headers": {"X-Api-Key": "${env:COURIER_TEST_SURELY_UNSET}"}},
            "${env:COURIER_TEST_SURELY_UNSET} is not set",
        ),
        ({"mapping": {"x": "lead..email"}}, "destinations[0].mapping.x: source 'lead..email'"),
        ({"mapping": {"x": "{{a +}}"}}, "destinations[0].mapping.x: column 6:"),
        ({"timeouts": {"connect": -1}}, "destinations[0].timeouts.connect:"),
        ({"colour": "blue"}, "destinations[0].colour:"),
    ],
)
def test_each_problem_names_its_path_and_reason(override: dict[str, Any], expected: str) -> None:
    (problem,) = problems_of({"destinations": [destination(**override)]})
    assert expected in problem


def test_https_is_required_except_on_loopback_or_when_marked_insecure() -> None:
    for url in ("http://127.0.0.1:8080/x", "http://localhost/x", "http://[::1]:80/x"):
        parse_destinations({"destinations": [destination(url=url)]})
    parse_destinations({"destinations": [destination(url="http://crm.internal/x", insecure=True)]})


def test_every_problem_is_reported_at_once_with_its_index() -> None:
    problems = problems_of(
        {
            "destinations": [
                destination(id="a"),
                destination(id="b", url="http://crm.example.com"),
                destination(id="c", method="TRACE"),
            ]
        }
    )
    assert len(problems) == 2
    assert problems[0].startswith("destinations[1].url")
    assert problems[1].startswith("destinations[2].method")


def test_a_field_problem_does_not_hide_the_destination_checks_of_other_fields() -> None:
    """A bad id stopped pydantic before the URL, header and batch checks: ``courier
    check`` showed the id, and the URL only in the next run."""
    problems = problems_of(
        {
            "destinations": [
                destination(
                    id="Bad-Id",
                    url="ftp://crm.example.com/x",
                    timeouts={"connect": -1},
                    headers={"X-Api-Key": "literal"},
                )
            ]
        }
    )
    assert [p.split(":")[0] for p in problems] == [
        "destinations[0].id",
        "destinations[0].timeouts.connect",
        "destinations[0].url",
        "destinations[0].headers.X-Api-Key",
    ]


def test_a_check_about_a_broken_field_is_not_reported_twice() -> None:
    # hubspot needs an auth block of its own kinds: a broken one is reported once, for
    # itself, not again as missing.
    problems = problems_of(
        {"destinations": [destination(integration="hubspot", auth={"type": "carrier_pigeon"})]}
    )
    auth_problems = [p for p in problems if p.startswith("destinations[0].auth")]
    assert len(auth_problems) == 1
    assert "carrier_pigeon" in auth_problems[0]


def test_duplicate_ids_and_empty_files_are_refused() -> None:
    assert problems_of({"destinations": [destination(), destination()]}) == [
        "destinations[1].id: 'crm' is used twice (destinations[0] has it too)"
    ]
    assert problems_of({"destinations": []})
    assert problems_of(None) == ["is empty: a destinations file has a destinations: list"]


def test_every_bad_range_of_a_schedule_is_named_by_its_place() -> None:
    [problem_a, problem_b] = problems_of(
        {
            "destinations": [
                destination(schedule={"timezone": "UTC", "hours": ["9-17", "09:00-25:00"]})
            ]
        }
    )
    assert problem_a.startswith("destinations[0].schedule.hours[0]: '9-17': write hours as ")
    assert problem_b.startswith("destinations[0].schedule.hours[1]: '09:00-25:00': write ")


def test_every_bad_redacted_path_is_named_by_its_place() -> None:
    privacy = {"redact": ["lead..x", "lead.email", "[bad"]}
    [first, second] = problems_of({"destinations": [destination(privacy=privacy)]})
    assert first.startswith("destinations[0].privacy.redact[0]: 'lead..x' is not a path (column 6")
    assert second.startswith("destinations[0].privacy.redact[2]: '[bad' is not a path")


def test_a_used_twice_id_and_every_flow_s_problems_are_listed_together() -> None:
    """A duplicate id hid every flow problem, and a flow's condition hid its plan's."""
    problems = problems_of(
        {
            "destinations": [destination(), destination()],
            "flows": [
                {"id": "f", "when": "lead.state in ['CA'", "plan": {"waterfall": ["crm", "c"]}},
                {"id": "g", "plan": "d"},
            ],
        }
    )
    assert problems == [
        "destinations[1].id: 'crm' is used twice (destinations[0] has it too)",
        "flows[0].when: column 20: the expression ends too early",
        "flows[0].plan.waterfall[1]: no destination 'c'",
        "flows[1].plan: no destination 'd'",
    ]


def test_a_destination_s_problem_does_not_hide_the_file_s_own() -> None:
    """Pydantic runs the file's checks only when every field is valid: a bad URL hid an id
    used twice and every flow's problem."""
    problems = problems_of(
        {
            "destinations": [destination(url="ftp://crm.example.com"), destination()],
            "flows": [
                {"id": "f", "plan": {"waterfall": ["crm", "zz"]}},
                {"id": "g", "plan": {"waterfal": ["crm"]}},
            ],
        }
    )
    assert problems[0].startswith("destinations[0].url: ")
    assert problems[1:] == [
        "flows[1].plan: not a step: 'waterfal' is unknown; did you mean 'waterfall'?",
        "destinations[1].id: 'crm' is used twice (destinations[0] has it too)",
        "flows[0].plan.waterfall[1]: no destination 'zz'",
    ]


def test_every_problem_of_a_flow_s_plan_is_listed() -> None:
    """A plan stopped at its first problem: fixing one showed the next."""
    plan = {
        "parallel": [
            {"weighted": {"crm": 0, "zz": 2}},
            {"conditional": {"rules": [{"when": "lead.x ==", "then": "yy"}]}},
            {"round_robin": ["crm", "crm"]},
        ]
    }
    assert problems_of({"destinations": [destination()], "flows": [{"id": "f", "plan": plan}]}) == [
        "flows[0].plan.parallel[0].weighted.crm: a weight is a whole number ≥ 1",
        "flows[0].plan.parallel[0].weighted[1]: no destination 'zz'",
        "flows[0].plan.parallel[1].conditional.rules[0].when: column 10: the expression ends "
        "too early",
        "flows[0].plan.parallel[1].conditional.rules[0].then: no destination 'yy'",
        "flows[0].plan.parallel[2].round_robin: a destination is named twice",
    ]


def test_the_message_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "d.yaml"
    path.write_text("destinations:\n  - id: crm\n    url: http://crm.example.com\n")
    with pytest.raises(ConfigError) as caught:
        load_destinations(path)
    assert f"{path}: destinations[0].url" in str(caught.value)


def test_unreadable_or_invalid_yaml_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        load_destinations(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("destinations: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_destinations(broken)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"destinations: \xff\xfe\n")
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        load_destinations(binary)


@pytest.mark.parametrize("text", ["[" * 100_000, "destinations: " + "{a: " * 5_000])
def test_yaml_nested_past_what_the_reader_takes_is_a_config_error(
    tmp_path: Path, text: str
) -> None:
    """PyYAML composes recursively: a file (or a version on the config topic) nested
    ~1,000 deep raised RecursionError, which ended a worker following the topic."""
    deep = tmp_path / "deep.yaml"
    deep.write_text(text)
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_destinations(deep)
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_text(text, "config v2")


def test_a_file_whose_aliases_expand_past_a_million_values_is_a_config_error(
    tmp_path: Path,
) -> None:
    """A "billion laughs": ten aliases of ten, nine levels deep, cost PyYAML a few hundred
    objects but were 10¹⁰ values in the constant's every request body (and in every worker
    that reads the version from the config topic). Refused, naming where it expands."""
    levels = (
        "a0: &a0 ["
        + ", ".join(["x"] * 10)
        + "]\n"
        + "".join(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]\n" for i in range(1, 10))
    )
    text = levels + (
        "destinations:\n  - id: crm\n    url: https://crm.example.com/leads\n"
        "    mapping:\n      x:\n        value: *a9\n"
    )
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(text)
    for read in (lambda: load_destinations(bomb), lambda: load_text(text, "config v2")):
        with pytest.raises(ConfigError) as refused:
            read()
        [problem] = refused.value.problems
        assert problem.startswith("destinations[0].mapping.x.value[")
        assert "too large with its aliases expanded (more than 1,000,000 values)" in problem
    # Aliases used as they are meant (a block shared by destinations) are read.
    shared = "destinations:\n" + "".join(
        f"  - {{id: d{i}, url: https://d{i}.example.com/leads, "
        + ("retry: &retry {max_attempts: 3}}\n" if i == 0 else "retry: *retry}\n")
        for i in range(3)
    )
    assert [d.id for d in load_text(shared, "shared").destinations] == ["d0", "d1", "d2"]


@pytest.mark.parametrize("port", ["0", "65536", "99999"])
def test_a_web_port_outside_1_to_65535_is_refused(
    monkeypatch: pytest.MonkeyPatch, port: str
) -> None:
    """It was taken, and failed as a traceback of Faust's at start."""
    monkeypatch.setenv("COURIER_WEB_PORT", port)
    with pytest.raises(ValidationError, match="web_port"):
        Settings()


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COURIER_BROKER", "kafka://k1:9092,k2:9092")
    monkeypatch.setenv("COURIER_IN_FLIGHT", "8")
    settings = Settings()
    assert settings.bootstrap_servers() == "k1:9092,k2:9092"
    assert settings.in_flight == 8
    assert settings.leads_topic == "leads.processed"


@pytest.mark.parametrize(
    "broker",
    ["kafka://k1:9092", "k1:9092,k2:9092", "kafka://[::1]:9092", "kafka", "10.0.0.7"],
)
def test_a_broker_list_in_any_of_its_forms_is_taken(broker: str) -> None:
    assert Settings(broker=broker).broker == broker


@pytest.mark.parametrize(
    ("broker", "problem"),
    [
        # two lines of a pasted export: would fail as an unreachable host, after start
        ("kafka://k1:9092\nkafka://k1:9092", "the address has a space, a line break"),
        ("kafka://k1:9092, k2:9092", "entry 2 of 2 has a space"),
        ("kafka://k1:9092,", "entry 2 of 2 is empty"),
        ("kafka://user:pw@k1:9092", "carries credentials: give them as COURIER_KAFKA_SASL"),
        ("http://k1:9092", "the scheme must be kafka://"),
        ("kafka://k1:99999", "no port number from 1 to 65535"),
        ("kafka://k1:9092/", "no port number from 1 to 65535"),
        ("kafka://::1:9092", "an IPv6 host in brackets"),
        ("", "is empty (unset it to start the embedded broker"),
    ],
)
def test_a_broker_that_cannot_be_an_address_list_is_named_at_start(
    broker: str, problem: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(broker=broker)
    [error] = caught.value.errors()
    assert error["loc"] == ("broker",)
    assert problem in error["msg"]
    assert "k1" not in error["msg"]  # a setting's problem never repeats its value


def test_every_problem_of_one_destination_is_listed_at_once(tmp_path: Path) -> None:
    """issue #13: ``courier check`` stopped at a destination's first problem."""
    path = tmp_path / "d.yaml"
    path.write_text(
        """
destinations:
  - id: crm
    url: http://crm.example.com/x
    method: GET
    batch: {size: 10}
    headers:
      X-Api-Key: literal-key
      Authorization: "Bearer ${env:COURIER_TEST_NOT_SET}"
  - id: hook
    integration: webhook
    url: https://hooks.example.com/in
    settings: {secret: "${env:COURIER_TEST_HOOK_NOT_SET}"}
"""
    )
    with pytest.raises(ConfigError) as raised:
        load_destinations(path)
    assert [p.split(":")[0] for p in raised.value.problems] == [
        "destinations[0].batch",
        "destinations[0].url",
        "destinations[0].headers.X-Api-Key",
        "destinations[0].headers.Authorization",
        "destinations[1].settings.secret",
    ]

    # --no-secrets: what cannot be resolved here is not a problem; the rest still is.
    with without_secret_values(), pytest.raises(ConfigError) as again:
        load_destinations(path)
    assert len(again.value.problems) == 3
    assert SCRUBBER.scrub(UNRESOLVED) == UNRESOLVED  # a stand-in is not a secret


def test_a_misspelt_option_is_named_with_the_one_it_is_closest_to() -> None:
    """Pydantic's "Extra inputs are not permitted" named neither what was meant nor what
    the block takes."""
    crm = destination(
        retires={"max_attempts": 3},
        limits={"per_secnd": 3},
        mapping={"email": {"from": "lead.email", "tpye": "string"}},
        response={
            "rules": [{"when": {"json": {"path": "$.ok", "equal": 1}}, "outcome": "success"}]
        },
    )
    hubspot = destination(id="hs", integration="hubspot", settings={"acces_token": "${env:HOME}"})
    hubspot.pop("url")
    problems = problems_of({"destinations": [crm, hubspot], "alerts": {"error_rate": {"abov": 1}}})
    assert "destinations[0].retires: unknown option; did you mean 'retry'? " in (
        "\n".join(problems) + " "
    )
    for expected in (
        "destinations[0].limits.per_secnd: unknown option; did you mean 'per_second'?",
        "destinations[0].mapping.email.tpye: unknown option; did you mean 'type'?",
        "destinations[0].response.rules[0].when.json.equal: unknown option; did you mean 'equals'?",
        "destinations[1].settings.acces_token: unknown option; did you mean 'access_token'?",
        "alerts.error_rate.abov: unknown option; did you mean 'above'?",
    ):
        assert any(expected in problem for problem in problems), (expected, problems)
    assert not any("Extra inputs" in problem for problem in problems)


def test_an_option_like_no_other_lists_what_its_block_takes() -> None:
    [problem] = problems_of({"destinations": [destination(colour="blue")]})
    assert problem.startswith(
        "destinations[0].colour: unknown option (options here: auth, batch, caps, "
    )
    assert "mapping, " in problem and problem.endswith("(destination 'crm')")


@pytest.mark.parametrize(
    ("plan", "problem"),
    [
        # one line, where pydantic gave two for each kind of step (22)
        ({"waterfal": ["crm"]}, "flows[0].plan: not a step: 'waterfal' is unknown; did you mean "
         "'waterfall'?"),
        ({"waterfall": ["crm", 7]}, "flows[0].plan.waterfall[1]: not a step: a destination id, "
         "or a block with one of parallel, waterfall, sequence,"),
        ({"parallel": ["crm"], "waterfall": ["crm"]}, "flows[0].plan: not a step: it has "
         "parallel and waterfall; a step is one of them"),
        ({"conditional": {"rules": [{"when": "lead.x == 1", "then": {"sequnce": ["crm"]}}]}},
         "flows[0].plan.conditional.rules[0].then: not a step: 'sequnce' is unknown; did you "
         "mean 'sequence'?"),
        # a problem inside a step keeps the file's path (the step's kind is not repeated)
        ({"waterfall": ["crm", {"parallel": []}]}, "flows[0].plan.waterfall[1].parallel: List "
         "should have at least 1 item"),
        ({"ping_post": {"buyers": ["crm"], "els": "crm"}}, "flows[0].plan.ping_post.els: "
         "unknown option; did you mean 'else'?"),
        # an extra key beside a step's one: that step's options, not every kind's
        ({"parallel": ["crm"], "extar": 1}, "flows[0].plan.extar: unknown option (options "
         "here: parallel)"),
        ({"waterfall": ["crm", {"parallel": ["crm"], "retires": 2}]}, "flows[0].plan."
         "waterfall[1].retires: unknown option (options here: parallel)"),
    ],
)  # fmt: skip
def test_a_step_that_is_none_is_one_problem_saying_why(plan: Any, problem: str) -> None:
    problems = problems_of({"destinations": [destination()], "flows": [{"id": "f", "plan": plan}]})
    assert len(problems) == 1, problems
    assert problems[0].startswith(problem), problems


def test_a_block_left_empty_says_so() -> None:
    """``retry:`` with nothing after it was "should be a block ..., not that"."""
    assert problems_of({"destinations": [destination(retry=None)]}) == [
        "destinations[0].retry: is empty; give a block of options (name: value) (options "
        "here: base_s, max_attempts, max_delay_s, max_retry_after_s) (destination 'crm')"
    ]


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        # The mapping was built for every lead and sent nowhere.
        ({"method": "GET", "mapping": {"email": "lead.email"}}, "destinations[0].method: a GET "
         "has no body, so the mapping would not be sent; integration: get_query puts it in the "
         "query string (destination 'crm')"),
        # get_query sent a GET all the same.
        ({"integration": "get_query", "method": "POST"}, "destinations[0].method: get_query "
         "sends GET, not POST (json_post or form_post send a body) (destination 'crm')"),
    ],
)  # fmt: skip
def test_a_method_the_integration_would_not_use_is_refused(
    fields: dict[str, Any], problem: str
) -> None:
    assert problems_of({"destinations": [destination(**fields)]}) == [problem]


def test_the_methods_an_integration_uses_are_taken() -> None:
    parse_destinations({"destinations": [destination(method="GET")]})  # the URL says it all
    parse_destinations({"destinations": [destination(integration="get_query", method="GET")]})
    parse_destinations({"destinations": [destination(integration="get_query")]})


def test_a_wrong_key_of_a_map_is_named_without_pydantic_s_mark() -> None:
    [problem] = problems_of({"destinations": [destination(caps={"weekdays": {"saturday": 0}})]})
    assert problem.startswith("destinations[0].caps.weekdays.saturday: Input should be 'mon'")


@pytest.mark.parametrize("above", [15, 0, -0.5])
def test_an_error_rate_that_is_no_share_says_how_to_write_one(above: float) -> None:
    """15 meant as a percentage was "less than or equal to 1", no more."""
    assert problems_of(
        {"destinations": [destination()], "alerts": {"error_rate": {"above": above}}}
    ) == [
        f"alerts.error_rate.above: {above:g} is not a share above 0 and at most 1 (0.15 for 15 %)"
    ]
    assert problems_of({"destinations": [destination(circuit={"error_rate": above})]}) == [
        f"destinations[0].circuit.error_rate: {above:g} is not a share above 0 and at most 1 "
        "(0.15 for 15 %) (destination 'crm')"
    ]


def test_a_misspelt_integration_is_named_with_the_one_it_is_closest_to() -> None:
    [problem] = problems_of({"destinations": [destination(integration="pipedrve")]})
    assert problem.startswith(
        "destinations[0].integration: unknown 'pipedrve'; did you mean 'pipedrive'? (known: "
    )


def test_a_misspelt_kind_of_block_is_named_with_the_one_it_is_closest_to() -> None:
    crm = destination(auth={"type": "barer", "token": "${env:HOME}"})
    assert problems_of({"destinations": [crm]}) == [
        "destinations[0].auth.type: unknown kind 'barer'; did you mean 'bearer'? (one of: "
        "api_key, basic, bearer, oauth2, jwt, hmac) (destination 'crm')"
    ]


def test_a_value_where_a_block_goes_says_so_with_the_block_s_options() -> None:
    """Pydantic said "a valid dictionary or instance of RetryPolicy": a class name the
    file's author never sees."""
    problems = problems_of({"destinations": [destination(retry=3, limits=[1])]})
    assert problems == [
        "destinations[0].limits: should be a block of options (name: value), not a list "
        "(options here: concurrency, per_day, per_hour, per_second) (destination 'crm')",
        "destinations[0].retry: should be a block of options (name: value), not a number "
        "(options here: base_s, max_attempts, max_delay_s, max_retry_after_s) (destination 'crm')",
    ]


@pytest.mark.parametrize(
    ("auth", "problem"),
    [
        ({"grant": "refresh_token"}, "grant refresh_token needs refresh_token: ${env:NAME}"),
        ({"grant": "password", "username": "leads@acme.example"}, "grant password needs"),
        ({"username": "u", "password": "${env:HOME}"}, "username and password are for grant"),
    ],
)
def test_an_oauth2_grant_without_what_it_sends_stops_start_up(
    auth: dict[str, str], problem: str
) -> None:
    """Before, a refresh_token grant without one started, and the token endpoint refused
    every request, lead after lead."""
    oauth = {"type": "oauth2", "token_url": "https://crm.example.com/token", "client_id": "c",
             "client_secret": "${env:HOME}", **auth}  # fmt: skip
    [said] = problems_of({"destinations": [destination(auth=oauth)]})
    assert said.startswith("destinations[0].auth.oauth2: ") and problem in said, said


def test_hours_by_day_name_each_problem_where_it_is() -> None:
    problems = problems_of(
        {"destinations": [
            destination(schedule={"timezone": "UTC", "hours": {"mon-fri": ["9-17"], "funday": []}}),
            destination(id="b", schedule={"timezone": "UTC", "days": ["mon"], "hours": {"mon": []}}),
            destination(id="c", schedule={"timezone": "UTC", "hours": {"mon-fri": [], "fri": []}}),
        ]}
    )  # fmt: skip
    assert problems[0].startswith("destinations[0].schedule.hours.mon-fri[0]: '9-17': write")
    assert problems[1].startswith("destinations[0].schedule.hours.funday: 'funday': name a day")
    assert problems[2].startswith("destinations[1].schedule.days: not with hours by day")
    assert problems[3].startswith("destinations[2].schedule.hours: fri is given twice")
