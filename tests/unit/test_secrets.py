"""Credentials by reference, and masked wherever they could be seen."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.secrets import (
    has_reference,
    is_sensitive_name,
    mask_header,
    mask_url,
    resolve_references,
)


def test_env_and_file_references_resolve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_USER", "ada")
    secret = tmp_path / "pw"
    secret.write_text("hunter2\n")
    assert resolve_references(f"${{env:CRM_USER}}:${{file:{secret}}}") == "ada:hunter2"


def test_unresolvable_references_name_themselves(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\$\{env:NOPE_NOT_SET\} is not set"):
        resolve_references("${env:NOPE_NOT_SET}")
    with pytest.raises(ValueError, match="cannot be read"):
        resolve_references(f"${{file:{tmp_path / 'absent'}}}")


@pytest.mark.parametrize(
    "name", ["Authorization", "X-Api-Key", "apikey", "X-Auth-Token", "Client-Secret", "Cookie"]
)
def test_credential_names_are_recognised(name: str) -> None:
    assert is_sensitive_name(name)


def test_ordinary_names_are_not_sensitive() -> None:
    assert not any(is_sensitive_name(n) for n in ("Content-Type", "X-Source", "Accept"))
    assert has_reference("Bearer ${env:X}") and not has_reference("Bearer abc")


def test_masking_keeps_the_scheme_and_hides_the_rest() -> None:
    assert mask_header("Authorization", "Basic YWRhOnB3") == "Basic ****"
    assert mask_header("Authorization", "opaque") == "****"
    assert mask_header("X-Api-Key", "abc def") == "****"


def test_urls_lose_user_info_and_every_query_value() -> None:
    masked = mask_url("https://ada:pw@crm.example.com/leads?key=abc&email=a%40b.c&x=")
    assert masked == "https://****@crm.example.com/leads?key=****&email=****&x=****"
    assert mask_url("https://crm.example.com/leads") == "https://crm.example.com/leads"


def test_log_records_are_scrubbed_message_and_traceback_and_survive_modes_formatter() -> None:
    import io
    import logging

    from mode.utils.logging import ExtensionFormatter

    from streams.secrets import SCRUBBER, scrub_log_records

    SCRUBBER.keep_secret("log-Secret-5f6g7h")
    scrub_log_records()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(ExtensionFormatter(stream=stream, fmt="%(message)s"))
    logger = logging.getLogger("courier-test-scrub")
    logger.addHandler(handler)
    try:
        logger.warning("sent %s to %s", "token=log-Secret-5f6g7h", "x")
        logger.warning("100% sure: msg % self.args")  # a '%' in a message with no args
        try:
            raise ValueError("url='https://x.example/?api_key=log-Secret-5f6g7h'")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert "log-Secret-5f6g7h" not in text
    assert "sent token=**** to x" in text
    assert "100% sure: msg % self.args" in text
    assert "api_key=****" in text
