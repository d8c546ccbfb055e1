"""Load order: parents before children, cycles loaded together.

Foreign keys make a directed graph (child → parent).  Strongly connected
components (a table referencing itself, or tables referencing each other) are
collapsed into one :class:`Step`, loaded in one transaction with deferred FK
checks.  The components are then ordered with :class:`graphlib.TopologicalSorter`;
ties are broken by name, so the order is the same on every run.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from graphlib import TopologicalSorter

from .model import Step, TableSpec


def _components(nodes: list[str], edges: Mapping[str, set[str]]) -> list[tuple[str, ...]]:
    """Tarjan's strongly connected components, iterative (deep chains are fine)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[tuple[str, ...]] = []
    counter = 0
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                out.append(tuple(sorted(group)))
    return out


def load_steps(specs: Iterable[TableSpec]) -> tuple[Step, ...]:
    """Steps in load order for the given tables (FKs to tables outside are ignored)."""
    specs = list(specs)
    names = sorted(s.name for s in specs)
    known = set(names)
    parents = {s.name: {fk.ref_table for fk in s.foreign_keys if fk.ref_table in known} for s in specs}
    groups = _components(names, parents)
    group_of = {t: g for g in groups for t in g}
    sorter: TopologicalSorter[tuple[str, ...]] = TopologicalSorter()
    for g in groups:
        deps = {group_of[p] for t in g for p in parents[t]} - {g}
        sorter.add(g, *deps)
    sorter.prepare()
    steps: list[Step] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready())
        for g in ready:
            steps.append(Step(g))
            sorter.done(g)
    return tuple(steps)


def with_parents(specs: Mapping[str, TableSpec], tables: Iterable[str]) -> set[str]:
    """``tables`` and every table they reference by foreign key, at any depth (those in ``specs``)."""
    todo, found = list(tables), set(tables)
    while todo:
        for fk in specs[todo.pop()].foreign_keys:
            if fk.ref_table in specs and fk.ref_table not in found:
                found.add(fk.ref_table)
                todo.append(fk.ref_table)
    return found
