"""Destination tables following the lake: create, evolve (SCHEMA_CHANGES=evolve, :mod:`nwlib.evolution`), foreign keys.

A new lake column is added; a dropped one is kept (nullable); a widening is an
``ALTER … TYPE``; a narrowing keeps the wider type; any other change gives the
column a type that holds both (``numeric`` or ``text``).  A changed primary key
stops that table with one line until ``--full-refresh`` rebuilds it.  Foreign
keys are ``DEFERRABLE`` so a step's transaction can defer them, with an index
on the child's columns.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence

from ...errors import SchemaChangeError, SourceModelError
from ...model import TableSpec
from ...records import LEDGER_TABLE, STATE_TABLE
from ...sql import ident, idents, qualified
from ...typemap import pg_type
from .bookkeeping import Bookkeeping
from .connection import Session
from .lock import LOCK_TABLE

MAX_IDENTIFIER_LENGTH = 63
RESERVED_TABLES = (LEDGER_TABLE, STATE_TABLE, LOCK_TABLE)
# Room on each page so CDC updates stay HOT (no index writes): measured by `make bench`.
FILLFACTOR = 90

# Widening that ALTER TABLE … TYPE can do without losing anything.
WIDENINGS = {("smallint", "integer"), ("smallint", "bigint"), ("integer", "bigint"), ("real", "double precision"),
             ("smallint", "numeric"), ("integer", "numeric"), ("bigint", "numeric"),
             ("character varying", "text"), ("character", "text")}  # a destination made by another tool


class Tables:
    def __init__(self, session: Session, schema: str, books: Bookkeeping):
        self.session, self.schema, self.books = session, schema, books

    @property
    def conn(self):
        return self.session.conn

    def check_identifiers(self, spec: TableSpec) -> None:
        for name in (spec.name, *spec.column_names):
            if len(name.encode()) > MAX_IDENTIFIER_LENGTH:
                raise SourceModelError(f"name {name!r} in table {spec.name!r} is longer than PostgreSQL's {MAX_IDENTIFIER_LENGTH} bytes",
                                       "rename it in the lake")
        if spec.name in RESERVED_TABLES:
            raise SourceModelError(f"lake table {spec.name!r} collides with nwlib's bookkeeping table", "rename the lake table")

    def columns(self, table: str) -> dict[str, str] | None:
        """The destination table's columns and types, None when it does not exist."""
        rows = self.conn.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
            "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            [self.schema, table],
        ).fetchall()
        return {n: t for n, t in rows} if rows else None

    def create(self, spec: TableSpec) -> None:
        cols = [f"{ident(c.name)} {pg_type(c.type).pg}" for c in spec.columns]
        if spec.primary_key:
            cols.append(f"PRIMARY KEY ({idents(spec.primary_key)})")
        self.conn.execute(f"CREATE TABLE {qualified(self.schema, spec.name)} ({', '.join(cols)}) WITH (fillfactor = {FILLFACTOR})")

    def primary_key(self, table: str) -> tuple[str, ...]:
        rows = self.conn.execute(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
            "WHERE i.indrelid = to_regclass(%s) AND i.indisprimary ORDER BY array_position(i.indkey, a.attnum)",
            [qualified(self.schema, table)]).fetchall()
        return tuple(r[0] for r in rows)

    def evolve(self, spec: TableSpec, full_refresh: bool, last_sent: Mapping[str, str] | None = None) -> tuple[list[str], bool]:
        """Make the destination table fit ``spec`` (SCHEMA_CHANGES=evolve, see nwlib.evolution); returns
        (notes, whether every row must be re-sent: an append-only table's new column).

        ``last_sent``: the columns (name → DuckDB type) the previous run sent, so each change is noted once."""
        last_sent = last_sent or {}
        existing = self.columns(spec.name)
        target = qualified(self.schema, spec.name)
        if existing is None:
            self.create(spec)
            return [f"created table {spec.name}"], False
        wanted = {c.name: pg_type(c.type).pg for c in spec.columns}
        problem = None
        if spec.primary_key and self.primary_key(spec.name) != tuple(spec.primary_key):
            problem = (f"table {spec.name}'s primary key is ({', '.join(self.primary_key(spec.name)) or 'none'}) in the destination "
                       f"and ({', '.join(spec.primary_key)}) in the lake")
        for k in spec.primary_key:
            old = existing.get(k)
            if not problem and old is not None and not _same_type(old, wanted[k]) and not _widens(old, wanted[k]):
                problem = f"primary key column {spec.name}.{k} changed type from {old} to {wanted[k]}"
        if problem:
            if full_refresh:
                with self.conn.transaction():
                    self.conn.execute(f"DROP TABLE {target} CASCADE")
                    self.books.forget_table(spec.name)
                    self.create(spec)
                return [f"recreated table {spec.name} ({problem})"], False
            raise SchemaChangeError(problem, f"rebuild that table: `nw sync --full-refresh --tables {spec.name}`")
        notes: list[str] = []
        resend = False
        with self.conn.transaction():
            for name, new in wanted.items():
                old = existing.get(name)
                if old is None:
                    self.conn.execute(f"ALTER TABLE {target} ADD COLUMN {ident(name)} {new}")
                    notes.append(f"added column {name} {new}")
                    resend = True
                elif _same_type(old, new):
                    continue
                elif _widens(old, new):
                    self.conn.execute(f"ALTER TABLE {target} ALTER COLUMN {ident(name)} TYPE {new}")
                    notes.append(f"widened column {name} from {old} to {new}")
                elif _widens(new, old) or _same_type(_holding_both(old, new), old):
                    # the destination's type already holds every new value: keep it (noted when the lake's type changed)
                    lake_type = spec.column(name).type
                    if name in last_sent and last_sent[name] != lake_type:
                        notes.append(f"column {name} is {lake_type} in the lake: kept {old}")
                else:
                    both = _holding_both(old, new)
                    self.conn.execute(f"ALTER TABLE {target} ALTER COLUMN {ident(name)} TYPE {both} USING {ident(name)}::{both}")
                    notes.append(f"column {name} changed from {old} to {new}: now {both}, which holds both")
            for name in existing:
                if name not in wanted and (not last_sent or name in last_sent):
                    self.conn.execute(f"ALTER TABLE {target} ALTER COLUMN {ident(name)} DROP NOT NULL")
                    notes.append(f"column {name} is no longer in the lake: kept, new rows leave it empty")
        return notes, resend

    def ensure_foreign_keys(self, specs: Sequence[TableSpec]) -> list[tuple[str, str]]:
        """Create the lake's FKs (DEFERRABLE) once both tables exist; returns (table, what was added)."""
        added = []
        present = {r[0] for r in self.conn.execute(
            "SELECT conname FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = %s AND contype = 'f'",
            [self.schema]).fetchall()}
        known = {s.name: s for s in specs}
        for spec in specs:
            for fk in spec.foreign_keys:
                ref = known.get(fk.ref_table)
                if ref is None or tuple(ref.primary_key) != tuple(fk.ref_columns):
                    continue  # PostgreSQL needs a unique key on the referenced side
                if tuple(spec.primary_key[: len(fk.columns)]) != tuple(fk.columns):
                    # Without an index on the child's columns every parent delete scans the child table.
                    index = constraint_name(spec.name, fk.columns, "idx")
                    self.conn.execute(f"CREATE INDEX IF NOT EXISTS {ident(index)} ON {qualified(self.schema, spec.name)} ({idents(fk.columns)})")
                name = constraint_name(spec.name, fk.columns, fk.ref_table)
                if name in present:
                    continue
                self.conn.execute(
                    f"ALTER TABLE {qualified(self.schema, spec.name)} ADD CONSTRAINT {ident(name)} "
                    f"FOREIGN KEY ({idents(fk.columns)}) REFERENCES {qualified(self.schema, fk.ref_table)} ({idents(fk.ref_columns)}) "
                    "DEFERRABLE INITIALLY IMMEDIATE")
                added.append((spec.name, f"added foreign key {name} ({', '.join(fk.columns)}) → {fk.ref_table} ({', '.join(fk.ref_columns)})"))
        return added


_NUMBERS = ("smallint", "integer", "bigint", "numeric", "real", "double precision")


def _holding_both(old: str, new: str) -> str:
    """A PostgreSQL type every value of ``old`` and of ``new`` converts to without loss."""
    if _base(old) in _NUMBERS and _base(new) in _NUMBERS:
        return "numeric"
    if {_base(old), _base(new)} <= {"date", "timestamp without time zone", "timestamp"}:
        return "timestamp"
    return "text"


def _base(t: str) -> str:
    return re.sub(r"\(.*\)", "", t).strip()


_ALIASES = {"timestamp without time zone": "timestamp", "time without time zone": "time", "bit varying": "varbit"}


def _same_type(old: str, new: str) -> bool:
    """Do PostgreSQL's spelling (format_type: ``timestamp without time zone[]``) and nw's (``timestamp[]``) name one type?"""
    def spelled(t: str) -> str:
        element = t.rstrip("[]")                      # an array's element type, spelled as a scalar's
        return _ALIASES.get(element, element).replace(" ", "") + t[len(element):]
    return spelled(old) == spelled(new)


def _widens(old: str, new: str) -> bool:
    if (_base(old), _base(new)) in WIDENINGS:
        return True
    if _base(old) == _base(new) == "numeric":
        m_old, m_new = re.findall(r"\d+", old), re.findall(r"\d+", new)
        if len(m_old) == 2 and len(m_new) == 2:
            (p1, s1), (p2, s2) = map(int, m_old), map(int, m_new)
            return s2 >= s1 and p2 - s2 >= p1 - s1
        return not m_new  # unconstrained numeric takes anything
    return False


def constraint_name(table: str, columns: Sequence[str], ref: str) -> str:
    name = f"fk_{table}_{'_'.join(columns)}_{ref}"
    if len(name.encode()) <= MAX_IDENTIFIER_LENGTH:
        return name
    digest = hashlib.md5(name.encode()).hexdigest()[:10]
    return name.encode()[:50].decode(errors="ignore") + "_" + digest
