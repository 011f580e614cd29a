"""Reading and writing PDQ hash lists: the files hash-sharing programmes exchange instead of images.

Formats read (detected from the first meaningful line):

- **CSV or TSV**: ``pdq_hex[,id[,tags...]]``, with or without a header. A header names its columns
  (``pdq``/``hash``/``signal_value``, ``id``, ``tags``, ``quality``; other columns become tags).
- **ThreatExchange signal file** (python-threatexchange's ``LocalFileSignalExchangeAPI``): one
  ``<signal_type> <value>`` per line, e.g. ``pdq f8f8f0ce...``; other signal types are reported, skipped.
- **JSON** (an array, or one object per line): ThreatExchange descriptors (``"type": "HASH_PDQ"`` with
  ``"indicator"`` or ``"raw_indicator"``) and match records (``"signal_type": "pdq"``,
  ``"signal_value"``), with optional ``id``, ``tags`` and ``quality``.

A PDQ hash is 64 hexadecimal digits, the 256 bits most significant first: the text form Meta's
ThreatExchange and its ``pdqhash``-based hasher use, and the byte order ``np.packbits`` gives. Lines with
a wrong length, non-hex digits or a repeated hash are reported with their line number and skipped.

Meta's ``threatexchange`` package would be the natural parser, but it does not install cleanly beside
this project: it requires ``faiss-cpu``, which overwrites the ``faiss`` module of the ``faiss-gpu`` wheel
CopyLens uses, and builds ``weighted-levenshtein`` from source (README, Dependencies). The formats are
small and documented; they are read here, and tested against its published examples.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import CopyLensError

HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
MAX_LIST_BYTES = 1 << 30  # a million hashes with ids and tags is about 100 MB
HASH_COLUMNS = ("pdq", "pdq_hash", "hash", "signal_value", "signal", "indicator", "value")
ID_COLUMNS = ("id", "entry_id", "reference_id", "name")
PDQ_TYPES = {"pdq", "hash_pdq", "pdqsignal", "photo_pdq"}
FORMATS = ("csv", "threatexchange")


@dataclass(frozen=True, slots=True)
class HashEntry:
    bits: bytes  # 32 bytes, most significant bit first
    entry_id: str
    tags: tuple[str, ...] = ()
    quality: int | None = None  # 0-100 when the list says
    line: int = 0

    @property
    def hex(self) -> str:
        return self.bits.hex()


@dataclass
class ParsedList:
    format: str
    entries: list[HashEntry] = field(default_factory=list)
    problems: list[tuple[int, str]] = field(default_factory=list)  # (line number, what is wrong)


def hash_bits(text: str) -> bytes | None:
    """32 bytes of a 64-digit hex PDQ hash, or None when it is not one."""
    text = text.strip()
    return bytes.fromhex(text) if HEX64.match(text) else None


def hamming(a: bytes, b: bytes) -> int:
    return int(np.unpackbits(np.frombuffer(a, np.uint8) ^ np.frombuffer(b, np.uint8)).sum())


def _read_text(path: Path) -> str:
    try:
        st = path.stat()
    except OSError as exc:
        raise CopyLensError(f"{path}: cannot read the hash list ({exc.strerror or exc})") from None
    if not path.is_file():
        raise CopyLensError(f"{path}: not a regular file")
    if st.st_size > MAX_LIST_BYTES:
        raise CopyLensError(f"{path}: the hash list is too large ({st.st_size >> 20} MB; the limit is "
                            f"{MAX_LIST_BYTES >> 20} MB)")
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CopyLensError(f"{path}: not a text file (byte {exc.start} is not UTF-8)") from None


class _Collector:
    def __init__(self, fmt: str) -> None:
        self.out = ParsedList(fmt)
        self.seen: dict[bytes, int] = {}

    def add(self, line: int, value: object, entry_id: object = None, tags: Iterable[str] = (),
            quality: object = None) -> None:
        text = str(value).strip() if value is not None else ""
        bits = hash_bits(text)
        if bits is None:
            shown = text if len(text) <= 70 else text[:67] + "..."
            why = (f"{len(text)} characters, a PDQ hash has 64" if text and re.fullmatch(r"[0-9a-fA-F]+", text)
                   else "not hexadecimal" if text else "no hash")
            self.out.problems.append((line, f"{shown!r} is not a PDQ hash ({why}); skipped"))
            return
        if bits in self.seen:
            self.out.problems.append((line, f"repeats the hash of line {self.seen[bits]}; skipped"))
            return
        q = None
        if quality not in (None, ""):
            try:
                q = int(float(str(quality)))
            except ValueError:
                self.out.problems.append((line, f"quality {quality!r} is not a number; ignored"))
            else:
                q = q if 0 <= q <= 100 else None
        self.seen[bits] = line
        eid = str(entry_id).strip() if entry_id not in (None, "") else bits.hex()[:16]
        self.out.entries.append(HashEntry(bits, eid, tuple(str(t).strip() for t in tags if str(t).strip()), q, line))


def _meaningful(lines: list[str]) -> tuple[int, str] | None:
    for i, line in enumerate(lines):
        s = line.strip()
        if s and not s.startswith("#"):
            return i, s
    return None


def parse_hash_list(path: str | Path) -> ParsedList:
    """Read a hash list file in any of the formats above (the format is detected)."""
    return parse_hash_text(_read_text(Path(path)))


def parse_hash_text(text: str) -> ParsedList:
    lines = text.splitlines()
    first = _meaningful(lines)
    if first is None:
        return ParsedList("empty")
    s = first[1]
    if s[0] in "[{":
        return _parse_json(text, lines)
    head = s.split(None, 1)
    if len(head) == 2 and not HEX64.match(head[0]) and "," not in head[0] and "\t" not in s \
            and (head[0].lower() in PDQ_TYPES or re.fullmatch(r"[a-z_0-9]+", head[0])) and HEX64.match(head[1].strip()):
        return _parse_te_file(lines)
    return _parse_csv(lines)


def _parse_te_file(lines: list[str]) -> ParsedList:
    c = _Collector("threatexchange")
    for n, line in enumerate(lines, 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        kind, _, value = s.partition(" ")
        if kind.lower() not in PDQ_TYPES:
            c.out.problems.append((n, f"signal type {kind!r} is not PDQ; skipped"))
            continue
        c.add(n, value)
    return c.out


def _parse_csv(lines: list[str]) -> ParsedList:
    c = _Collector("csv")
    first = _meaningful(lines)
    assert first is not None
    delimiter = "\t" if "\t" in first[1] else ","
    rows = csv.reader(io.StringIO("\n".join(lines)), delimiter=delimiter)
    columns: list[str] | None = None
    for n, row in enumerate(rows, 1):
        if not row or not "".join(row).strip() or row[0].strip().startswith("#"):
            continue
        if columns is None and n == first[0] + 1 and not HEX64.match(row[0].strip()) \
                and any(h.strip().lower() in HASH_COLUMNS for h in row):
            columns = [h.strip().lower() for h in row]
            continue
        if columns is None:
            c.add(n, row[0], row[1] if len(row) > 1 else None, row[2:])
            continue
        rec = dict(zip(columns, row, strict=False))
        value = next((rec[k] for k in HASH_COLUMNS if k in rec), None)
        eid = next((rec[k] for k in ID_COLUMNS if k in rec), None)
        tags = [t for k, v in rec.items() if k == "tags" for t in re.split(r"[;|]", v)]
        tags += [f"{k}={v}" for k, v in rec.items()
                 if k not in HASH_COLUMNS + ID_COLUMNS + ("tags", "quality") and v.strip()]
        c.add(n, value, eid, tags, rec.get("quality"))
    return c.out


def _parse_json(text: str, lines: list[str]) -> ParsedList:
    c = _Collector("json")
    try:
        doc = json.loads(text)
        items = [(i + 1, o) for i, o in enumerate(doc if isinstance(doc, list) else doc.get("data", [doc]))]
        numbered_by = "item"
    except ValueError:
        items, numbered_by = [], "line"
        for n, line in enumerate(lines, 1):
            if line.strip():
                try:
                    items.append((n, json.loads(line)))
                except ValueError as exc:
                    c.out.problems.append((n, f"not JSON ({exc.msg}); skipped"))
    c.out.format = "json" if numbered_by == "item" else "jsonl"
    for n, obj in items:
        if not isinstance(obj, dict):
            c.out.problems.append((n, "not a JSON object; skipped"))
            continue
        kind = str(obj.get("signal_type", obj.get("type", "pdq"))).lower()
        if kind not in PDQ_TYPES:
            c.out.problems.append((n, f"signal type {kind!r} is not PDQ; skipped"))
            continue
        value = next((obj[k] for k in ("signal_value", "raw_indicator", "indicator", "hash", "pdq") if k in obj),
                     None)
        if isinstance(value, dict):  # a ThreatExchange descriptor's nested indicator object
            value = value.get("indicator")
        tags = obj.get("tags") or []
        if isinstance(tags, dict):  # {"data": [{"text": ...}]}
            tags = [t.get("text", "") for t in tags.get("data", []) if isinstance(t, dict)]
        if not isinstance(tags, list):
            tags = [str(tags)]
        c.add(n, value, obj.get("id", obj.get("entry_id")), [str(t) for t in tags], obj.get("quality"))
    return c.out


def format_hash_list(rows: Iterable[tuple[bytes, str, int | None]], fmt: str) -> str:
    """A hash list in ``fmt``: ``csv`` (header ``pdq,id,quality``) or ``threatexchange`` (``pdq <hex>``
    lines: the signal file that python-threatexchange's file exchange reads; it has no ids)."""
    if fmt == "threatexchange":
        return "".join(f"pdq {bits.hex()}\n" for bits, _, _ in rows)
    if fmt != "csv":
        raise CopyLensError(f"unknown hash list format {fmt!r} (choose from {', '.join(FORMATS)})")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["pdq", "id", "quality"])
    for bits, rid, q in rows:
        w.writerow([bits.hex(), rid, "" if q is None else q])
    return buf.getvalue()
