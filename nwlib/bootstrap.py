"""The sample lake: the original project's four tables, realistic and deterministic.

Values come from ``hash(row number, seed)``, not from a random generator, so
the same ``--scale`` and ``--seed`` give the same lake on any machine and any
number of threads.  Scale 1 ≈ 1k clientes / 10k pedidos / 30k itens /
10k pagamentos; every count grows linearly with the scale.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from . import lake
from .errors import ConfigError
from .sql import ident

PER_SCALE = {"clientes": 1_000, "pedidos": 10_000, "itens_pedido": 30_000, "pagamentos": 10_000}

SCHEMA = {
    "clientes": [("id_cliente", "BIGINT"), ("nome", "VARCHAR"), ("email", "VARCHAR"), ("cidade", "VARCHAR"),
                 ("estado", "VARCHAR"), ("data_cadastro", "DATE"), ("updated_at", "TIMESTAMP")],
    "pedidos": [("id_pedido", "BIGINT"), ("id_cliente", "BIGINT"), ("data_pedido", "TIMESTAMP"), ("status", "VARCHAR"),
                ("valor_total", "DECIMAL(12,2)"), ("updated_at", "TIMESTAMP")],
    "itens_pedido": [("id_item", "BIGINT"), ("id_pedido", "BIGINT"), ("produto", "VARCHAR"), ("quantidade", "INTEGER"),
                     ("preco_unitario", "DECIMAL(10,2)"), ("updated_at", "TIMESTAMP")],
    "pagamentos": [("id_pagamento", "BIGINT"), ("id_pedido", "BIGINT"), ("metodo", "VARCHAR"), ("valor", "DECIMAL(12,2)"),
                   ("data_pagamento", "TIMESTAMP"), ("status", "VARCHAR"), ("updated_at", "TIMESTAMP")],
}
PRIMARY_KEYS = {"clientes": "id_cliente", "pedidos": "id_pedido", "itens_pedido": "id_item", "pagamentos": "id_pagamento"}
FOREIGN_KEYS = [("pedidos", "id_cliente", "clientes", "id_cliente"),
                ("itens_pedido", "id_pedido", "pedidos", "id_pedido"),
                ("pagamentos", "id_pedido", "pedidos", "id_pedido")]

FIRST = ["Ana", "Bruno", "Carla", "Diego", "Elisa", "Felipe", "Gabriela", "Heitor", "Isabela", "João", "Karina", "Lucas",
         "Mariana", "Nicolas", "Olívia", "Pedro", "Quésia", "Rafael", "Sofia", "Tiago", "Úrsula", "Vitor", "Yasmin", "Zeca"]
LAST = ["Silva", "Santos", "Oliveira", "Souza", "Rodrigues", "Ferreira", "Alves", "Pereira", "Lima", "Gomes", "Costa",
        "Ribeiro", "Martins", "Carvalho", "D'Ávila", "Araújo", "Melo", "Barbosa", "Cardoso", "Rocha"]
CITIES = [("São Paulo", "SP"), ("Rio de Janeiro", "RJ"), ("Belo Horizonte", "MG"), ("Porto Alegre", "RS"), ("Curitiba", "PR"),
          ("Salvador", "BA"), ("Recife", "PE"), ("Fortaleza", "CE"), ("Manaus", "AM"), ("Belém", "PA"), ("Goiânia", "GO"),
          ("Florianópolis", "SC"), ("Vitória", "ES"), ("Natal", "RN"), ("Campinas", "SP"), ("Niterói", "RJ")]
PRODUCTS = ["Café especial 500g", "Caneca cerâmica", "Chaleira elétrica", "Moedor manual", "Filtro de papel",
            "Prensa francesa", "Açúcar mascavo 1kg", "Chá verde", "Garrafa térmica", "Xícara dupla", "Coador de pano",
            "Balança digital", "Cápsulas (10un)", "Bule de ágata", "Leite vegetal"]
STATUS_PEDIDO = ["novo", "pago", "enviado", "entregue", "cancelado"]
PAYMENT_METHODS = ["pix", "cartao_credito", "boleto", "cartao_debito"]
STATUS_PAG = ["aprovado", "pendente", "recusado", "estornado"]
EPOCH = "TIMESTAMP '2024-01-01 08:00:00'"


def _list(values) -> str:
    return "[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


def _pick(values, i: str, salt: int, seed: int) -> str:
    return f"{_list(values)}[1 + (hash({i}, {salt}, {seed}) % {len(values)})::INTEGER]"


def _rnd(i: str, salt: int, seed: int, mod: int) -> str:
    return f"(hash({i}, {salt}, {seed}) % {mod})::BIGINT"


def _count(con, table: str) -> int:
    return con.execute(f"SELECT count(*) FROM {ident(table)}").fetchone()[0]


@dataclass(frozen=True)
class BootstrapResult:
    path: Path
    counts: dict[str, int]


def _create(con) -> None:
    for table, cols in SCHEMA.items():
        body = ", ".join(f"{ident(c)} {t}" + (" PRIMARY KEY" if c == PRIMARY_KEYS[table] else "") for c, t in cols)
        con.execute(f"CREATE TABLE {ident(table)} ({body})")
    # The original project's metadata tables, in its own format (nwlib.lake.metadata), so either loader reads this lake.
    con.execute("CREATE TABLE table_metadata (table_name VARCHAR PRIMARY KEY, schema_json JSON)")
    con.execute("CREATE TABLE fk_metadata (table_name VARCHAR, column_name VARCHAR, ref_table VARCHAR, ref_column VARCHAR, "
                "PRIMARY KEY (table_name, column_name))")
    for table, cols in SCHEMA.items():
        refs = [(c, rt, rc) for t, c, rt, rc in FOREIGN_KEYS if t == table]
        meta = lake.original_schema_json(cols, [PRIMARY_KEYS[table]], refs)
        con.execute("INSERT INTO table_metadata VALUES (?, ?)", [table, json.dumps(meta)])
    con.executemany("INSERT INTO fk_metadata VALUES (?, ?, ?, ?)", [list(fk) for fk in FOREIGN_KEYS])


def _fill(con, scale: int, seed: int, start: dict[str, int], counts: dict[str, int], now_sql: str | None = None) -> None:
    """Append ``counts`` rows per table with ids after ``start`` (parents first)."""
    s = seed
    n_cli = start["clientes"] + counts["clientes"]
    n_ped = start["pedidos"] + counts["pedidos"]
    ts = lambda i, salt, span: f"{EPOCH} + to_seconds({_rnd(i, salt, s, span)})"
    stamp = now_sql or None
    con.execute(f"""
        INSERT INTO clientes SELECT i,
          {_pick(FIRST, 'i', 1, s)} || ' ' || {_pick(LAST, 'i', 2, s)},
          lower(strip_accents({_pick(FIRST, 'i', 1, s)})) || '.' || i || '@exemplo.com.br',
          {_pick([c for c, _ in CITIES], 'i', 3, s)}, NULL,
          DATE '2020-01-01' + {_rnd('i', 4, s, 1460)}::INTEGER,
          {stamp or ts('i', 5, 86400 * 365)}
        FROM range({start['clientes'] + 1}, {n_cli + 1}) r(i)""")
    con.execute(f"UPDATE clientes SET estado = CASE cidade {' '.join(f'''WHEN '{c}' THEN '{uf}' ''' for c, uf in CITIES)} END WHERE estado IS NULL")
    con.execute(f"""
        INSERT INTO pedidos SELECT i,
          1 + {_rnd('i', 6, s, n_cli)},
          {ts('i', 7, 86400 * 365)},
          {_pick(STATUS_PEDIDO, 'i', 8, s)},
          0,
          {stamp or ts('i', 9, 86400 * 365)}
        FROM range({start['pedidos'] + 1}, {n_ped + 1}) r(i)""")
    # three items per order on average: item i belongs to order ((i-1) // 3) + 1 over the new range
    con.execute(f"""
        INSERT INTO itens_pedido SELECT i,
          {start['pedidos'] + 1} + ((i - {start['itens_pedido'] + 1}) * {counts['pedidos']} // greatest({counts['itens_pedido']}, 1)),
          {_pick(PRODUCTS, 'i', 10, s)},
          1 + {_rnd('i', 11, s, 5)}::INTEGER,
          (5 + {_rnd('i', 12, s, 19500)} / 100)::DECIMAL(10,2),
          {stamp or ts('i', 13, 86400 * 365)}
        FROM range({start['itens_pedido'] + 1}, {start['itens_pedido'] + counts['itens_pedido'] + 1}) r(i)""")
    con.execute(f"""
        UPDATE pedidos p SET valor_total = t.total FROM (
          SELECT id_pedido, sum(quantidade * preco_unitario)::DECIMAL(12,2) AS total FROM itens_pedido
          WHERE id_pedido > {start['pedidos']} GROUP BY id_pedido) t
        WHERE p.id_pedido = t.id_pedido""")
    con.execute(f"""
        INSERT INTO pagamentos SELECT i,
          {start['pedidos'] + 1} + ((i - {start['pagamentos'] + 1}) * {counts['pedidos']} // greatest({counts['pagamentos']}, 1)),
          {_pick(PAYMENT_METHODS, 'i', 14, s)}, 0,
          {ts('i', 15, 86400 * 365)},
          {_pick(STATUS_PAG, 'i', 16, s)},
          {stamp or ts('i', 17, 86400 * 365)}
        FROM range({start['pagamentos'] + 1}, {start['pagamentos'] + counts['pagamentos'] + 1}) r(i)""")
    con.execute(f"""
        UPDATE pagamentos g SET valor = p.valor_total FROM pedidos p
        WHERE g.id_pedido = p.id_pedido AND g.id_pagamento > {start['pagamentos']}""")


def bootstrap(path: Path | str, scale: float = 1, seed: int = 42) -> BootstrapResult:
    """(Re)create the sample lake at ``path``.  Idempotent: same inputs, same lake."""
    if scale <= 0:
        raise ConfigError(f"--scale {scale} must be greater than 0", "use e.g. --scale 1")
    path = Path(path)
    counts = {t: max(1, int(round(n * scale))) for t, n in PER_SCALE.items()}
    con = lake.connect(path, read_only=False, create=True)
    try:
        con.execute("BEGIN")
        for t in list(SCHEMA)[::-1] + ["table_metadata", "fk_metadata"]:
            con.execute(f"DROP TABLE IF EXISTS {ident(t)}")
        _create(con)
        _fill(con, 1, seed, {t: 0 for t in PER_SCALE}, counts)
        con.execute("COMMIT")
        con.execute("CHECKPOINT")
        return BootstrapResult(path, {t: _count(con, t) for t in PER_SCALE})
    finally:
        con.close()


def mutate(path: Path | str, fraction: float = 0.01, seed: int = 7) -> dict[str, dict[str, int]]:
    """Apply a realistic batch of changes: updates (new ``updated_at``), inserts, deletes (children first)."""
    if not 0 < fraction <= 1:
        raise ConfigError(f"--fraction {fraction} must be in (0, 1]", "use e.g. --fraction 0.01")
    con = lake.connect(path, read_only=False)
    try:
        for t in PER_SCALE:
            if not con.execute("SELECT 1 FROM duckdb_tables() WHERE table_name = ?", [t]).fetchone():
                raise ConfigError(f"the lake at {path} has no table {t!r}", "run `nw bootstrap` first")
        stamp = "CAST(timezone('UTC', now()) AS TIMESTAMP)"
        counts = {t: _count(con, t) for t in PER_SCALE}
        tops = {t: con.execute(f"SELECT coalesce(max({ident(PRIMARY_KEYS[t])}), 0) FROM {ident(t)}").fetchone()[0] for t in PER_SCALE}
        s = seed + int(tops["pedidos"])  # successive batches differ, same lake + seed gives the same batch
        pick = lambda col, frac: f"(hash({col}, {s}) % 1000000) < {int(frac * 1_000_000)}"
        out: dict[str, dict[str, int]] = {t: {"inserted": 0, "updated": 0, "deleted": 0} for t in PER_SCALE}
        con.execute("BEGIN")
        # deletes, children first: a small share of orders with their items and payments
        gone = f"SELECT id_pedido FROM pedidos WHERE {pick('id_pedido', fraction / 10)}"
        for t in ("itens_pedido", "pagamentos"):
            out[t]["deleted"] = con.execute(f"DELETE FROM {ident(t)} WHERE id_pedido IN ({gone})").fetchone()[0]
        out["pedidos"]["deleted"] = con.execute(f"DELETE FROM pedidos WHERE {pick('id_pedido', fraction / 10)}").fetchone()[0]
        # updates with a new updated_at
        out["clientes"]["updated"] = con.execute(
            f"UPDATE clientes SET email = 'novo.' || id_cliente || '@exemplo.com.br', updated_at = {stamp} WHERE {pick('id_cliente', fraction)}").fetchone()[0]
        out["pedidos"]["updated"] = con.execute(
            f"UPDATE pedidos SET status = CASE status WHEN 'novo' THEN 'pago' WHEN 'pago' THEN 'enviado' WHEN 'enviado' THEN 'entregue' ELSE status END, "
            f"updated_at = {stamp} WHERE {pick('id_pedido', fraction)}").fetchone()[0]
        out["itens_pedido"]["updated"] = con.execute(
            f"UPDATE itens_pedido SET quantidade = quantidade + 1, updated_at = {stamp} WHERE {pick('id_item', fraction)}").fetchone()[0]
        out["pagamentos"]["updated"] = con.execute(
            f"UPDATE pagamentos SET status = 'aprovado', updated_at = {stamp} WHERE status = 'pendente' AND {pick('id_pagamento', fraction * 5)}").fetchone()[0]
        # inserts, parents first
        new = {t: max(1, int(counts[t] * fraction)) for t in PER_SCALE}
        _fill(con, 1, s, tops, new, now_sql=stamp)
        for t in PER_SCALE:
            out[t]["inserted"] = new[t]
        con.execute("COMMIT")
        return out
    finally:
        con.close()
