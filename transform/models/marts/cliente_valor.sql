-- A customer's lifetime value: orders, what they were worth, what was paid, first and last order.
with pedidos_validos as (
    select * from {{ source('lake', 'pedidos') }} where status <> 'cancelado'
),
pagos as (
    select p.id_cliente, sum(g.valor) as valor_pago, max(g.updated_at) as updated_at
    from {{ source('lake', 'pagamentos') }} g
    join {{ source('lake', 'pedidos') }} p using (id_pedido)
    where g.status = 'aprovado'
    group by p.id_cliente
),
por_cliente as (
    select id_cliente, count(*) as pedidos, sum(valor_total) as valor_total,
           min(data_pedido) as primeiro_pedido, max(data_pedido) as ultimo_pedido, max(updated_at) as updated_at
    from pedidos_validos
    group by id_cliente
)
select
    c.id_cliente,
    c.nome,
    c.email,
    c.estado,
    coalesce(o.pedidos, 0)::integer as pedidos,
    coalesce(o.valor_total, 0)::decimal(14, 2) as valor_total,
    coalesce(g.valor_pago, 0)::decimal(14, 2) as valor_pago,
    case when o.pedidos > 0 then round(o.valor_total / o.pedidos, 2) end::decimal(14, 2) as ticket_medio,
    o.primeiro_pedido,
    o.ultimo_pedido,
    greatest(c.updated_at, o.updated_at, g.updated_at) as updated_at
from {{ source('lake', 'clientes') }} c
left join por_cliente o using (id_cliente)
left join pagos g using (id_cliente)
