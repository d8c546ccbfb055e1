"""Destination tables following the lake: create, evolve, foreign keys.

A new lake column is added (and every row re-sent so it is filled); a safe
widening is an ``ALTER … TYPE``; anything else stops that table with one line
until ``--full-refresh`` rebuilds it.  Foreign keys are ``DEFERRABLE`` so a
step's transaction can defer them, with an index on the child's columns.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

from ...errors import SchemaChangeError, SourceModelError
from ...model import TableSpec
from ...records import LEDGER_TABLE, STATE_TABLE
from ...sql import ident, idents, qualified
from ...typemap import pg_type
from .bookkeeping import Bookkeeping
from .connection import Session

MAX_IDENTIFIER_LENGTH = 63
RESERVED_TABLES = (LEDGER_TABLE, STATE_TABLE)
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

    def evolve(self, spec: TableSpec, full_refresh: bool) -> tuple[list[str], bool]:
        """Make the destination table fit the lake's; returns (notes, whether every row must be re-sent)."""
        existing = self.columns(spec.name)
        target = qualified(self.schema, spec.name)
        if existing is None:
            self.create(spec)
            return [f"created table {spec.name}"], False
        wanted = {c.name: pg_type(c.type).pg for c in spec.columns}
        notes: list[str] = []
        problems = []
        added = [n for n in wanted if n not in existing]
        for name, old in existing.items():
            if name not in wanted:
                renamed = f"dropped, or renamed to {' or '.join(added)}" if added else "dropped or renamed"
                problems.append(f"column {spec.name}.{name} ({old}) is no longer in the lake ({renamed})")
        for name, new in wanted.items():
            old = existing.get(name)
            if old is None or _same_type(old, new):
                continue
            if _widens(old, new):
                continue
            problems.append(f"column {spec.name}.{name} changed type from {old} to {new}, which is not a safe widening")
        if problems:
            if full_refresh:
                with self.conn.transaction():
                    self.conn.execute(f"DROP TABLE {target} CASCADE")
                    self.books.forget_table(spec.name)
                    self.create(spec)
                return [f"recreated table {spec.name} ({problems[0]})"], False
            raise SchemaChangeError(problems[0], f"rerun with `nw sync --full-refresh --tables {spec.name}` to rebuild that table")
        resend = False
        with self.conn.transaction():
            for name, new in wanted.items():
                old = existing.get(name)
                if old is None:
                    self.conn.execute(f"ALTER TABLE {target} ADD COLUMN {ident(name)} {new}")
                    notes.append(f"added column {name} {new}")
                    resend = True
                elif not _same_type(old, new):
                    self.conn.execute(f"ALTER TABLE {target} ALTER COLUMN {ident(name)} TYPE {new}")
                    notes.append(f"widened column {name} from {old} to {new}")
            if resend:
                # Forget the cursor in the ALTER's own transaction: if the run dies before
                # the rows are re-sent, the next run still sends them all (no NULL backfill).
                self.books.forget_watermark(spec.name)
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


def _base(t: str) -> str:
    return re.sub(r"\(.*\)", "", t).strip()


def _same_type(old: str, new: str) -> bool:
    alias = {"timestamp without time zone": "timestamp", "time without time zone": "time", "bit varying": "varbit"}
    return alias.get(old, old).replace(" ", "") == alias.get(new, new).replace(" ", "")


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
