"""Small HTML pieces the dashboard's tabs share: tables, tags, messages, sizes and durations."""
from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import datetime

ERROR_STYLE = "color:#b00020;background:#fdecea;border:1px solid #f5c2c7;padding:6px 10px;border-radius:4px;margin:4px 0"
OK_STYLE = "color:#1b5e20;background:#e8f5e9;border:1px solid #a5d6a7;padding:6px 10px;border-radius:4px;margin:4px 0"
NOTE_STYLE = "color:#37474f;background:#eceff1;border:1px solid #cfd8dc;padding:6px 10px;border-radius:4px;margin:4px 0"
# Every style the page needs is here (no stylesheet, font or icon is fetched).  Tables wrap their cells; a table
# that is still wider than the window (a lake table's rows) scrolls inside its own .nw-scroll box.
TABLE_STYLE = ("<style>.nw-t{border-collapse:collapse;font:12px/1.4 system-ui,sans-serif;margin:4px 0}"
               ".nw-t th{background:#eceff1;text-align:left;padding:3px 8px;border-bottom:1px solid #b0bec5;white-space:nowrap}"
               ".nw-t td{padding:2px 8px;border-bottom:1px solid #eceff1;overflow-wrap:break-word}"
               ".nw-scroll{overflow-x:auto;max-width:100%}.nw-rows td{white-space:nowrap}"
               ".nw-t td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}"
               ".nw-kpi{display:inline-block;margin:4px 18px 4px 0}.nw-kpi b{display:block;font-size:20px}"
               ".nw-tag{font-size:10px;padding:0 4px;border-radius:3px;margin-left:4px;color:#fff;white-space:nowrap}"
               ".nw-charts{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}.nw-charts>div{flex:1 1 380px;min-width:0}"
               ".nw-wide{align-self:stretch;width:auto;min-width:0}.nw-wide .widget-html-content{width:100%}"
               "</style>")
TAGS = {"PK": "#6a1b9a", "FK": "#00838f", "INC": "#ef6c00"}


class Raw(str):
    """Already-escaped HTML for a table cell."""


def fmt(v) -> str:
    if v is None:
        return "<i style='color:#90a4ae'>NULL</i>"
    if isinstance(v, float):
        return "—" if v != v else f"{v:,.3f}"  # NaN: pandas' missing value
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    if isinstance(v, datetime):
        return html.escape(v.isoformat(sep=" ", timespec="seconds"))
    text = str(v)
    return html.escape(text if len(text) <= 80 else text[:77] + "…")


def html_table(columns: Sequence[str], rows: Sequence[Sequence], cls: str = "") -> str:
    head = "".join(f"<th>{h if h.startswith('<') else html.escape(h)}</th>" for h in columns)
    body = "".join(
        "<tr>" + "".join(f"<td class='n'>{fmt(v)}</td>" if isinstance(v, (int, float)) and not isinstance(v, bool)
                         else f"<td>{v if isinstance(v, Raw) else fmt(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table class='nw-t {cls}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def scroll(table: str) -> str:
    """A table that may be wider than the window, in a box that scrolls sideways instead of spilling."""
    return f"<div class='nw-scroll'>{table}</div>"


def wide(widget):
    """An HTML widget as wide as its column, no wider (what a chart needs to shrink with the window)."""
    widget.add_class("nw-wide")
    return widget


def tag(kind: str, text: str | None = None) -> Raw:
    return Raw(f"<span class='nw-tag' style='background:{TAGS[kind]}'>{html.escape(text or kind)}</span>")


def error_html(message: str) -> str:
    return f"<div class='nw-error' style='{ERROR_STYLE}'>⚠ {html.escape(message)}</div>"


def ok_html(message: str) -> str:
    return f"<div class='nw-ok' style='{OK_STYLE}'>✓ {html.escape(message)}</div>"


def note_html(message: str) -> str:
    """A neutral one-line message (nothing went wrong, but there is nothing to show)."""
    return f"<div class='nw-note' style='{NOTE_STYLE}'>{html.escape(message)}</div>"


def heading(text: str) -> str:
    return f"<h4 style='margin:8px 0 2px'>{html.escape(text)}</h4>"


def size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:,.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return str(n)


def duration(seconds: float) -> str:
    for unit, span in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= span:
            return f"{seconds / span:,.1f} {unit}"
    return f"{seconds:,.1f} s"
