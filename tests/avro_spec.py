"""Avro specification pieces written out independently of fastavro, for tests."""

from __future__ import annotations

# The Avro specification's reference CRC-64-AVRO ("Schema Fingerprints"), written out
# independently of fastavro so a wrong header cannot pass by agreeing with itself.
EMPTY = 0xC15D213AA4D7A795


def _table() -> list[int]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (EMPTY & -(fp & 1))
        table.append(fp)
    return table


def spec_fingerprint(canonical: bytes) -> int:
    table = _table()
    fp = EMPTY
    for byte in canonical:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp
