"""Load order: parents first, deterministic ties, cycles collapsed into one step."""
from __future__ import annotations

import itertools
import random

from nwlib.graph import load_steps
from nwlib.model import Column, ForeignKey, Step, TableSpec


def spec(name: str, *parents: str) -> TableSpec:
    fks = tuple(ForeignKey(name, (f"{p}_id",), p, ("id",)) for p in parents)
    cols = (Column("id", "INTEGER"),) + tuple(Column(f"{p}_id", "INTEGER") for p in parents)
    return TableSpec(name, cols, ("id",), fks)


def order(specs) -> list[tuple[str, ...]]:
    return [s.tables for s in load_steps(specs)]


def assert_parents_first(specs, steps):
    position = {t: i for i, step in enumerate(steps) for t in step}
    for s in specs:
        for fk in s.foreign_keys:
            if fk.ref_table in position:
                assert position[fk.ref_table] <= position[s.name], (s.name, fk.ref_table, steps)


def test_sample_schema_order():
    specs = [spec("pagamentos", "pedidos"), spec("itens_pedido", "pedidos"), spec("pedidos", "clientes"), spec("clientes")]
    assert order(specs) == [("clientes",), ("pedidos",), ("itens_pedido",), ("pagamentos",)]


def test_ties_are_broken_by_name_whatever_the_input_order():
    specs = [spec("zeta"), spec("alpha"), spec("mid", "zeta"), spec("beta", "alpha"), spec("gamma")]
    expected = order(specs)
    assert expected[:3] == [("alpha",), ("gamma",), ("zeta",)]
    for perm in itertools.permutations(specs):
        assert order(perm) == expected


def test_self_reference_is_one_step_of_one_table():
    specs = [spec("departamentos"), spec("employees", "employees", "departamentos")]
    steps = load_steps(specs)
    assert [s.tables for s in steps] == [("departamentos",), ("employees",)]
    assert not steps[1].is_cycle           # a single table: deferred FKs handle the self-reference


def test_two_table_cycle_collapses_into_one_step_after_its_parents():
    specs = [spec("a", "b", "root"), spec("b", "a"), spec("root"), spec("leaf", "b")]
    steps = load_steps(specs)
    assert [s.tables for s in steps] == [("root",), ("a", "b"), ("leaf",)]
    assert steps[1].is_cycle and steps[1] == Step(("a", "b"))


def test_three_table_cycle_and_a_separate_two_cycle():
    specs = [spec("x", "z"), spec("y", "x"), spec("z", "y"), spec("p", "q"), spec("q", "p", "z"), spec("child", "p", "x")]
    steps = order(specs)
    assert ("x", "y", "z") in steps and ("p", "q") in steps
    assert steps.index(("x", "y", "z")) < steps.index(("p", "q")) < steps.index(("child",))
    assert sorted(t for s in steps for t in s) == sorted(s.name for s in specs)


def test_fk_to_a_table_outside_the_selection_is_ignored():
    assert order([spec("pedidos", "clientes")]) == [("pedidos",)]


def test_deep_chain_of_2000_tables_has_no_recursion_limit():
    n = 2000
    specs = [spec(f"t{i:05d}", f"t{i - 1:05d}") if i else spec("t00000") for i in range(n)]
    random.Random(7).shuffle(specs)
    steps = order(specs)
    assert steps == [(f"t{i:05d}",) for i in range(n)]


def test_deep_cycle_of_1000_tables_is_one_step():
    n = 1000
    specs = [spec(f"c{i:04d}", f"c{(i + 1) % n:04d}") for i in range(n)]
    steps = order(specs)
    assert len(steps) == 1 and len(steps[0]) == n


def test_random_graphs_keep_parents_first_and_are_deterministic():
    rng = random.Random(11)
    for _ in range(50):
        names = [f"t{i}" for i in range(rng.randint(1, 12))]
        specs = [spec(n, *rng.sample(names, rng.randint(0, min(3, len(names))))) for n in names]
        steps = order(specs)
        assert_parents_first(specs, steps)   # a parent is in an earlier step, or in the same cycle step
        shuffled = specs[:]
        rng.shuffle(shuffled)
        assert order(shuffled) == steps
