"""The report stage on its own: JSON records written and read back with one
schema (every field kept), and the reader on any value, any damaged real
record and any bytes (it loads or says which record is wrong, never crashes;
what it loads renders as text, JSON and DOT)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from _records import (
    _DELETE,
    EDGE_VALUES,
    JSON_VALUES,
    PROPERTY,
    REAL_RECORDS,
    REPORT_BYTES,
    _damaged,
    _paths,
    _renders,
    mutated_records,
)
from hypothesis import given

from deadlockwatch._report.load import ReportError, finding_from_json, load_findings
from deadlockwatch._report.text import to_json


def _subset(old: Any, new: Any) -> bool:
    """``old`` appears in ``new``, which may have more keys in its objects."""
    if isinstance(old, dict):
        return isinstance(new, dict) and all(
            k in new and _subset(v, new[k]) for k, v in old.items()
        )
    if isinstance(old, list):
        return (
            isinstance(new, list)
            and len(old) == len(new)
            and all(_subset(a, b) for a, b in zip(old, new, strict=True))
        )
    return bool(old == new)


def test_real_records_load_and_round_trip() -> None:
    for record in REAL_RECORDS:
        finding = finding_from_json(record)
        again = to_json(finding)
        # every field comes back as it was (the writer may add newer ones,
        # at any depth: an old record lacks them)
        assert _subset(record, again)
        assert finding_from_json(again) == finding
        assert to_json(finding_from_json(again)) == again
        _renders(finding)


@PROPERTY
@given(JSON_VALUES)
def test_finding_from_json_on_any_json_value(value: Any) -> None:
    try:
        finding = finding_from_json(value)
    except ReportError:
        return
    _renders(finding)


def test_every_field_of_real_records_damaged_in_every_way() -> None:
    """Exhaustive over one change at a time: each field deleted or replaced by
    each edge value loads or is rejected, never crashes (nor does rendering)."""
    tried = 0
    for record in REAL_RECORDS:
        for path in _paths(record):
            for value in [_DELETE, *EDGE_VALUES]:
                try:
                    finding = finding_from_json(_damaged(record, path, value))
                except ReportError:
                    pass
                else:
                    _renders(finding)
                tried += 1
    assert tried > 2000


@PROPERTY
@given(mutated_records())
def test_finding_from_json_on_damaged_real_records(record: dict[str, Any]) -> None:
    try:
        finding = finding_from_json(record)
    except ReportError as exc:
        assert str(exc).startswith("record")
        return
    _renders(finding)


@PROPERTY
@given(REPORT_BYTES)
def test_load_findings_on_any_bytes(fuzz_dir: Path, data: bytes) -> None:
    path = fuzz_dir / "fuzz.jsonl"
    path.write_bytes(data)
    try:
        findings = load_findings(str(path))
    except ReportError as exc:
        assert str(path) in str(exc)
        return
    assert findings
    for finding in findings:
        _renders(finding)
