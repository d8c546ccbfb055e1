"""``nw_estado`` (each table's cursor, row count and columns) and ``controle_cargas`` (the run ledger).

Both live in DB_SCHEMA.  The writes here run inside the caller's transaction,
so a table's rows, its state and its ledger row commit together.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from ...cdc import ChangeSet
from ...model import FAILED, OK, Column, TableSpec, TableState, Watermark
from ...records import LEDGER_COLUMNS, LEDGER_TABLE, STATE_TABLE, now
from ...sql import ident, qualified
from .connection import Session


class Bookkeeping:
    def __init__(self, session: Session, schema: str):
        self.session = session
        self.schema = schema
        self.ledger = qualified(schema, LEDGER_TABLE)
        self.state = qualified(schema, STATE_TABLE)

    @property
    def conn(self):
        return self.session.conn

    def ensure(self) -> None:
        """Create the schema and both tables if missing."""
        cols = ", ".join(f"{ident(n)} {t}" for n, t in LEDGER_COLUMNS.items())
        # IF NOT EXISTS still needs CREATE on the database: a user who was given a schema has not.
        if not self.conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [self.schema]).fetchone():
            self.conn.execute(f"CREATE SCHEMA IF NOT EXISTS {ident(self.schema)}")
        self.conn.execute(f"CREATE TABLE IF NOT EXISTS {self.ledger} (id bigserial PRIMARY KEY, {cols})")
        self.conn.execute(
            f"CREATE TABLE IF NOT EXISTS {self.state} ("
            "tabela_nome text PRIMARY KEY, watermark jsonb, linhas bigint NOT NULL DEFAULT 0, "
            "colunas jsonb, run_id text, atualizado_em timestamptz)"
        )

    def exists(self) -> bool:
        return self.conn.execute("SELECT to_regclass(%s)", [self.state]).fetchone()[0] is not None

    # --- nw_estado -------------------------------------------------------------------------
    def read_states(self, tables: Sequence[str]) -> dict[str, TableState]:
        out = {t: TableState() for t in tables}
        # Reading creates nothing (a dry run or `nw status` on a fresh destination changes nothing).
        if not self.exists():
            return out
        rows = self.conn.execute(
            f"SELECT tabela_nome, watermark, linhas, colunas FROM {self.state} WHERE tabela_nome = ANY(%s)", [list(tables)]).fetchall()
        for name, wm, n, cols in rows:
            out[name] = TableState(Watermark.from_json(wm), int(n), tuple(Column(c["name"], c["type"]) for c in (cols or [])), True)
        return out

    def save_state(self, spec: TableSpec, wm: Watermark, inserted: int, run_id: str, reset: bool = False) -> None:
        cols = json.dumps([{"name": c.name, "type": c.type} for c in spec.columns])
        self.conn.execute(
            f"INSERT INTO {self.state} AS s (tabela_nome, watermark, linhas, colunas, run_id, atualizado_em) "
            "VALUES (%s, %s, %s, %s, %s, now()) ON CONFLICT (tabela_nome) DO UPDATE SET watermark = EXCLUDED.watermark, "
            "linhas = CASE WHEN %s THEN EXCLUDED.linhas ELSE s.linhas + EXCLUDED.linhas END, colunas = EXCLUDED.colunas, "
            "run_id = EXCLUDED.run_id, atualizado_em = now()",
            [spec.name, json.dumps(wm.to_json()), inserted, cols, run_id, reset],
        )

    def forget_watermark(self, table: str) -> None:
        self.conn.execute(f"UPDATE {self.state} SET watermark = NULL WHERE tabela_nome = %s", [table])

    def forget_table(self, table: str) -> None:
        self.conn.execute(f"DELETE FROM {self.state} WHERE tabela_nome = %s", [table])

    def add_rows(self, table: str, n: int) -> None:
        self.conn.execute(f"UPDATE {self.state} SET linhas = linhas + %s, atualizado_em = now() WHERE tabela_nome = %s", [n, table])

    def set_row_count(self, table: str, n: int) -> None:
        self.conn.execute(f"UPDATE {self.state} SET linhas = %s WHERE tabela_nome = %s", [n, table])

    # --- controle_cargas -------------------------------------------------------------------
    def record_load(self, run_id: str, cs: ChangeSet, started: datetime, ins: int, upd: int) -> None:
        mode = cs.spec.mode + (" full" if cs.full else " incremental")
        self.conn.execute(
            f"INSERT INTO {self.ledger} (run_id, tabela_nome, modo, status, linhas_inseridas, "
            "linhas_atualizadas, linhas_carregadas, watermark_antes, watermark_depois, iniciado_em, finalizado_em, ultima_carga) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, clock_timestamp(), clock_timestamp())",  # now() is the transaction's start
            [run_id, cs.spec.name, mode, OK, ins, upd, ins + upd, json.dumps(cs.watermark_before.to_json()),
             json.dumps(cs.watermark_after.to_json()), started],
        )

    def record_deletes(self, run_id: str, table: str, n: int) -> None:
        """Add ``n`` deletes to the run's row for ``table`` (or write one)."""
        updated = self.conn.execute(
            f"UPDATE {self.ledger} SET linhas_excluidas = linhas_excluidas + %s, finalizado_em = clock_timestamp() "
            f"WHERE id = (SELECT max(id) FROM {self.ledger} WHERE run_id = %s AND tabela_nome = %s)",
            [n, run_id, table]).rowcount
        if not updated:
            self.conn.execute(
                f"INSERT INTO {self.ledger} (run_id, tabela_nome, modo, status, linhas_excluidas, iniciado_em, finalizado_em, ultima_carga) "
                "VALUES (%s, %s, 'merge deletes', %s, %s, now(), now(), now())", [run_id, table, OK, n])

    def note_schema_changes(self, run_id: str, table: str, notes: Sequence[str]) -> None:
        self.conn.execute(
            f"UPDATE {self.ledger} SET mudancas_schema = concat_ws('; ', mudancas_schema, %s::text) WHERE run_id = %s AND tabela_nome = %s",
            ["; ".join(notes), run_id, table])

    def record_failure(self, run_id: str, table: str, mode: str, error: str, started=None, status: str = FAILED) -> None:
        self.conn.execute(
            f"INSERT INTO {self.ledger} (run_id, tabela_nome, modo, status, erro, iniciado_em, finalizado_em) "
            "VALUES (%s, %s, %s, %s, %s, %s, clock_timestamp())", [run_id, table, mode, status, error, started or now()])

    def history(self, limit: int) -> list[dict]:
        cur = self.conn.execute(f"SELECT * FROM {self.ledger} ORDER BY id DESC LIMIT %s", [limit])
        names = [d.name for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]
