"""``nw_estado`` (each table's cursor, row count, fingerprint sum and revision, columns) and
``controle_cargas`` (the run ledger, one row per table per run).

Both live in DB_SCHEMA.  The writes here run inside the caller's transaction,
so a table's rows, its state and its ledger row commit together.  Columns that
older versions of nwlib did not create are added once.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from ...cdc import ChangeSet
from ...model import OK, Column, TableReport, TableSpec, TableState, Watermark
from ...records import LEDGER_COLUMNS, LEDGER_TABLE, STATE_TABLE, report_row
from ...sql import ident, qualified
from .connection import Session

STATE_COLUMNS: dict[str, str] = {
    "tabela_nome": "text PRIMARY KEY",
    "watermark": "jsonb",
    "linhas": "bigint NOT NULL DEFAULT 0",
    "colunas": "jsonb",
    "run_id": "text",
    "atualizado_em": "timestamptz",
    "soma_fingerprints": "numeric",       # sum of the fingerprints of the rows held (NULL: unknown)
    "versao_fingerprint": "text",
    "revisao": "text",                    # changes with every commit that touches the table
}


class Bookkeeping:
    def __init__(self, session: Session, schema: str):
        self.session = session
        self.schema = schema
        self.ledger = qualified(schema, LEDGER_TABLE)
        self.state = qualified(schema, STATE_TABLE)
        self._complete = False            # both tables are there with every column (once seen, it stays so)

    @property
    def conn(self):
        return self.session.conn

    def ensure(self) -> None:
        """Create the schema and both tables if missing; add columns an older nwlib did not create.  Once they
        were found complete, later calls ask the server nothing."""
        if self._complete:
            return
        # IF NOT EXISTS still needs CREATE on the database: a user who was given a schema has not.
        if not self.conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [self.schema]).fetchone():
            self.conn.execute(f"CREATE SCHEMA IF NOT EXISTS {ident(self.schema)}")
        present = {(t, c) for t, c in self.conn.execute(
            "SELECT c.relname, a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = ANY(%s) AND a.attnum > 0 "
            "AND NOT a.attisdropped", [self.schema, [LEDGER_TABLE, STATE_TABLE]]).fetchall()}
        for table, target, columns, extra in ((LEDGER_TABLE, self.ledger, LEDGER_COLUMNS, "id bigserial PRIMARY KEY, "),
                                              (STATE_TABLE, self.state, STATE_COLUMNS, "")):
            if not any(t == table for t, _ in present):
                cols = ", ".join(f"{ident(n)} {t}" for n, t in columns.items())
                self.conn.execute(f"CREATE TABLE IF NOT EXISTS {target} ({extra}{cols})")
                continue
            for name, typ in columns.items():
                if (table, name) not in present:
                    self.conn.execute(f"ALTER TABLE {target} ADD COLUMN IF NOT EXISTS {ident(name)} {typ.replace(' NOT NULL', '')}")
        # Found complete without changing anything: true whatever this transaction does next.
        self._complete = all((t, n) in present for t, cols in ((LEDGER_TABLE, LEDGER_COLUMNS), (STATE_TABLE, STATE_COLUMNS)) for n in cols)

    def recheck(self) -> None:
        """Ask the server again at the next :meth:`ensure` (someone may have dropped or restored the tables)."""
        self._complete = False

    def exists(self) -> bool:
        return self.conn.execute("SELECT to_regclass(%s)", [self.state]).fetchone()[0] is not None

    # --- nw_estado -------------------------------------------------------------------------
    def read_states(self, tables: Sequence[str]) -> dict[str, TableState]:
        out = {t: TableState() for t in tables}
        # Reading creates nothing (a dry run or `nw status` on a fresh destination changes nothing).
        if not self._complete:
            exists, has_fp = self.conn.execute(
                "SELECT to_regclass(%s) IS NOT NULL, EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(%s) "
                "AND attname = 'revisao' AND NOT attisdropped)", [self.state, self.state]).fetchone()
            if not exists:
                return out
        else:
            has_fp = True
        extra = ", soma_fingerprints::text, versao_fingerprint, revisao" if has_fp else ", NULL, NULL, NULL"
        rows = self.conn.execute(
            f"SELECT tabela_nome, watermark, linhas, colunas{extra} FROM {self.state} WHERE tabela_nome = ANY(%s)", [list(tables)]).fetchall()
        for name, wm, n, cols, total, version, revision in rows:
            out[name] = TableState(Watermark.from_json(wm), int(n), tuple(Column(c["name"], c["type"]) for c in (cols or [])), True,
                                   None if total is None else int(total), version, revision)
        return out

    def save_state(self, spec: TableSpec, state: TableState, run_id: str) -> None:
        cols = json.dumps([{"name": c.name, "type": c.type} for c in spec.columns])
        total = None if state.fingerprint_sum is None else str(state.fingerprint_sum)
        self.conn.execute(
            f"INSERT INTO {self.state} AS s (tabela_nome, watermark, linhas, colunas, run_id, atualizado_em, soma_fingerprints, "
            "versao_fingerprint, revisao) VALUES (%s, %s, %s, %s, %s, now(), %s::numeric, %s, %s) ON CONFLICT (tabela_nome) DO UPDATE SET "
            "watermark = EXCLUDED.watermark, linhas = EXCLUDED.linhas, colunas = EXCLUDED.colunas, run_id = EXCLUDED.run_id, "
            "atualizado_em = now(), soma_fingerprints = EXCLUDED.soma_fingerprints, versao_fingerprint = EXCLUDED.versao_fingerprint, "
            "revisao = EXCLUDED.revisao",
            [spec.name, json.dumps(state.watermark.to_json()), state.row_count, cols, run_id, total, state.fingerprint_version, state.revision])

    def row_count(self, table: str) -> int:
        row = self.conn.execute(f"SELECT linhas FROM {self.state} WHERE tabela_nome = %s", [table]).fetchone()
        return int(row[0]) if row else 0

    def forget_table(self, table: str) -> None:
        self.conn.execute(f"DELETE FROM {self.state} WHERE tabela_nome = %s", [table])

    def forget_watermark(self, table: str) -> None:
        self.conn.execute(f"UPDATE {self.state} SET watermark = NULL WHERE tabela_nome = %s", [table])

    def remove_rows(self, table: str, n: int, fingerprint_sum: int | None, revision: str) -> None:
        """``n`` rows whose fingerprints add up to ``fingerprint_sum`` (None: unknown) left the table."""
        self.conn.execute(
            f"UPDATE {self.state} SET linhas = linhas - %s, soma_fingerprints = soma_fingerprints - %s::numeric, revisao = %s, "
            "atualizado_em = now() WHERE tabela_nome = %s",
            [n, None if fingerprint_sum is None else str(fingerprint_sum), revision, table])

    # --- controle_cargas -------------------------------------------------------------------
    def record_load(self, run_id: str, cs: ChangeSet, started: datetime, ins: int, upd: int) -> None:
        """The table's row for this run, written with its rows (added to when a retry meets a committed load)."""
        mode = cs.spec.mode + (" full" if cs.full else " incremental")
        updated = self.conn.execute(
            f"UPDATE {self.ledger} SET linhas_inseridas = linhas_inseridas + %s, linhas_atualizadas = linhas_atualizadas + %s, "
            "linhas_carregadas = linhas_carregadas + %s, watermark_depois = %s, finalizado_em = clock_timestamp(), "
            "ultima_carga = clock_timestamp() WHERE run_id = %s AND tabela_nome = %s",
            [ins, upd, ins + upd, json.dumps(cs.watermark_after.to_json()), run_id, cs.spec.name]).rowcount
        if not updated:
            self.conn.execute(
                f"INSERT INTO {self.ledger} (run_id, tabela_nome, modo, status, linhas_inseridas, "
                "linhas_atualizadas, linhas_carregadas, watermark_antes, watermark_depois, iniciado_em, finalizado_em, ultima_carga) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, clock_timestamp(), clock_timestamp())",  # now() is the transaction's start
                [run_id, cs.spec.name, mode, OK, ins, upd, ins + upd, json.dumps(cs.watermark_before.to_json()),
                 json.dumps(cs.watermark_after.to_json()), started])

    def record_deletes(self, run_id: str, table: str, n: int) -> None:
        """Add ``n`` deletes to the run's row for ``table`` (or write one)."""
        updated = self.conn.execute(
            f"UPDATE {self.ledger} SET linhas_excluidas = linhas_excluidas + %s, finalizado_em = clock_timestamp() "
            "WHERE run_id = %s AND tabela_nome = %s", [n, run_id, table]).rowcount
        if not updated:
            self.conn.execute(
                f"INSERT INTO {self.ledger} (run_id, tabela_nome, modo, status, linhas_excluidas, iniciado_em, finalizado_em, ultima_carga) "
                "VALUES (%s, %s, 'merge deletes', %s, %s, now(), clock_timestamp(), clock_timestamp())", [run_id, table, OK, n])

    def record(self, run_id: str, reports: Sequence[TableReport], redact) -> None:
        """The final row of each table for this run: the row its load wrote is completed, or one is written."""
        if not reports:
            return
        names = list(LEDGER_COLUMNS)
        rows = []
        for r in reports:
            row = report_row(run_id, r)
            row["erro"] = redact(row["erro"]) if row["erro"] else None
            rows.append([row[n] for n in names])
        casts = {n: LEDGER_COLUMNS[n].split()[0] for n in names}
        values = ", ".join("(" + ", ".join(f"%s::{casts[n]}" for n in names) + ")" for _ in rows)
        sets = ", ".join(f"{ident(n)} = v.{ident(n)}" for n in names if n not in ("run_id", "tabela_nome", "iniciado_em", "ultima_carga",
                                                                                   "watermark_antes"))
        cols = ", ".join(ident(n) for n in names)
        self.conn.execute(
            f"WITH v ({cols}) AS (VALUES {values}), "
            f"done AS (UPDATE {self.ledger} c SET {sets}, ultima_carga = coalesce(c.ultima_carga, v.ultima_carga) FROM v "
            "WHERE c.run_id = v.run_id AND c.tabela_nome = v.tabela_nome RETURNING c.tabela_nome) "
            f"INSERT INTO {self.ledger} ({cols}) SELECT {cols} FROM v WHERE v.tabela_nome NOT IN (SELECT tabela_nome FROM done)",
            [x for row in rows for x in row])

    def history(self, limit: int) -> list[dict]:
        return self._rows(f"SELECT * FROM {self.ledger} ORDER BY id DESC LIMIT %s", [limit])

    def run_history(self, runs: int) -> list[dict]:
        """Every row of the newest ``runs`` runs (the runs whose latest row is newest), newest first."""
        return self._rows(f"SELECT * FROM {self.ledger} WHERE run_id IN (SELECT run_id FROM {self.ledger} GROUP BY run_id "
                          "ORDER BY max(id) DESC LIMIT %s) ORDER BY id DESC", [runs])

    def _rows(self, query: str, params: list) -> list[dict]:
        cur = self.conn.execute(query, params)
        names = [d.name for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]
