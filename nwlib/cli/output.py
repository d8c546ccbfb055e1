"""What ``nw`` prints for people (tables made to fit the terminal, wrapped lines) and for scripts (one JSON
document, every string redacted of secrets)."""
from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timezone

from ..errors import split_hint


class Out:
    """Output for people: lines at most ``width`` wide (the terminal's, else COLUMNS, else 80 in a pipe or a
    log).  Tables are plain text made to fit it; notes and errors go below them, never inside a cell."""

    def __init__(self):
        import shutil

        self.width = max(40, shutil.get_terminal_size((80, 24)).columns)

    def say(self, text: str) -> None:
        """A line, wrapped at the width (continuation lines indented)."""
        print("\n".join(wrap(text, self.width, indent="  ", fold=False)))

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[str] = (),
              optional: Sequence[str] = (), one_line: bool = False) -> None:
        """A header, a rule, a line per row.  ``right`` columns are right-aligned (numbers); ``optional``
        columns (watermarks, checksums) are left out, from the right, until the table fits.  When it does not fit,
        headers wrap first, then the widest text column (a long table name, a URL) folds; nothing is cut.
        ``one_line``: a row is never wrapped, however wide it is."""
        keep = list(range(len(headers)))

        def natural(i: int) -> int:
            return max(len(x) for x in [headers[i], *(r[i] for r in rows)])

        def total(w: dict) -> int:
            return sum(w.values()) + 2 * (len(w) - 1)

        w = {i: natural(i) for i in keep}
        for i in reversed(keep):          # the optional columns, from the right, until the table fits
            if headers[i] in optional and total(w) > self.width:
                del w[i]
        if not one_line and total(w) > self.width:
            for i in w:
                w[i] = max([len(r[i]) for r in rows] + [len(word) for word in headers[i].split()])
            while total(w) > self.width:
                text = [i for i in w if headers[i] not in right and w[i] > 10]
                if not text:
                    break
                widest = max(text, key=lambda i: w[i])
                w[widest] = max(10, w[widest] - (total(w) - self.width))

        def line(cells: Sequence[str]) -> list[str]:
            parts = {i: wrap(cells[i], w[i]) for i in w}
            height = max(len(p) for p in parts.values())
            return ["  ".join((str.rjust if headers[i] in right else str.ljust)(p[k] if k < len(p) else "", w[i]) for i, p in parts.items())
                    .rstrip() for k in range(height)]

        out = line(headers) + ["─" * total(w)]
        for r in rows:
            out += line(r)
        print("\n".join(out))


def wrap(text: str, width: int, indent: str = "", fold: bool = True) -> list[str]:
    """``text`` in lines of at most ``width``, broken between words; a short phrase in parentheses
    ("(transaction pooler)") stays on one line; a word longer than a line is folded (in a table cell) or, with
    ``fold=False``, kept whole on its own line (a URL or a path in a sentence: a reader copies it)."""
    import re
    import textwrap

    keep = lambda m: m.group(0).replace(" ", "\xa0") if len(m.group(0)) <= width // 2 else m.group(0)
    lines = []
    for part in text.splitlines() or [""]:
        lines += textwrap.wrap(re.sub(r"\([^()]*\)", keep, part), width, subsequent_indent=indent,
                               break_long_words=fold, break_on_hyphens=False) or [""]
    return [line.replace("\xa0", " ") for line in lines]


def print_json(doc, settings=None) -> None:
    """One JSON document on stdout; every string passed through the settings' redaction first."""
    if settings is not None:
        doc = redacted(doc, settings)
    print(json.dumps(doc, indent=2, ensure_ascii=False, default=json_value))


def redacted(value, settings):
    if isinstance(value, str):
        return settings.redact(value)
    if isinstance(value, dict):
        return {k: redacted(v, settings) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redacted(v, settings) for v in value]
    return value


def json_value(value):
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    return str(value)      # Decimal, UUID, date … as text


def span(seconds: float | None) -> str:
    """12s, 5m, 3h, 2d."""
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def ago(when) -> str:
    if not isinstance(when, datetime):
        return "-"
    now = datetime.now(timezone.utc) if when.tzinfo else datetime.now()
    return span(max(0.0, (now - when).total_seconds())) + " ago"


def local(when) -> str:
    if not isinstance(when, datetime):
        return "-"
    return (when.astimezone() if when.tzinfo else when).strftime("%Y-%m-%d %H:%M:%S")


def fmt_wm(wm) -> str:
    if wm is None or wm.value is None:
        return "-"
    return wm.value + (f" / {','.join(map(str, wm.key))}" if wm.key else "")



def plain(value) -> str:
    if value is None or value == [] or value == {}:
        return "-"
    if isinstance(value, list):
        return ",".join(map(str, value))
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" if k else str(v) for k, v in value.items())
    return str(value)


def print_report(report, out) -> None:
    """The sync report (or dry-run plan): one line per table; errors, schema changes and notes below.

    The first failed table's hint is left to the error line nw ends with (said once); another table's
    hint is shown when it says something else."""
    kind = "plan (dry run)" if report.dry_run else "sync report"
    out.say(f"{kind} — run {report.run_id} → {report.destination}")
    counts = ["to insert", "to update", "to delete"] if report.dry_run else ["inserted", "updated", "deleted", "secs"]
    rows = [[r.table, r.mode.replace(" incremental", ""), r.status, f"{r.inserted:,}", f"{r.updated:,}", f"{r.deleted:,}",
             *([] if report.dry_run else [f"{r.seconds:.2f}"]), fmt_wm(r.watermark_after)] for r in report.tables]
    out.table(("table", "mode", "status", *counts, "watermark"), rows, right=counts, optional=("secs", "watermark"))
    said = split_hint(report.failed[0].error or "")[1] if report.failed else None
    if report.checks:
        failed = sum(1 for c in report.checks if not c.passed)
        out.say(f"quality checks: {len(report.checks) - failed} of {len(report.checks)} passed"
                + (f"; {len(report.held)} table(s) held back" if report.held else ""))
    for r in report.tables:
        if r.error:
            what, hint = split_hint(r.error)
            out.say(f"{r.table}: {r.status}: {what}" + (f" — {hint}" if hint and hint != said else ""))
        for change in r.schema_changes:
            out.say(f"{r.table}: schema: {change}")
        for note in r.notes:
            out.say(f"{r.table}: {note}")
