{{ config(post_hook="{{ nw_foreign_keys([('id_cliente', 'cliente_valor', 'id_cliente')]) }}") }}
-- An order with its items and payments summed up: one row per order.
-- depends_on: {{ ref('cliente_valor') }}  (its customers: built after them, and not when they fail)
with itens as (
    select id_pedido, count(*) as itens, sum(quantidade) as unidades, sum(quantidade * preco_unitario) as valor_itens,
           max(updated_at) as updated_at
    from {{ source('lake', 'itens_pedido') }}
    group by id_pedido
),
pagamentos as (
    select id_pedido, count(*) as pagamentos, sum(valor) filter (where status = 'aprovado') as valor_pago,
           max(updated_at) as updated_at
    from {{ source('lake', 'pagamentos') }}
    group by id_pedido
)
select
    p.id_pedido,
    p.id_cliente,
    p.data_pedido,
    p.status,
    p.valor_total,
    coalesce(i.itens, 0)::integer as itens,
    coalesce(i.unidades, 0)::bigint as unidades,
    coalesce(i.valor_itens, 0)::decimal(14, 2) as valor_itens,
    coalesce(g.pagamentos, 0)::integer as pagamentos,
    coalesce(g.valor_pago, 0)::decimal(14, 2) as valor_pago,
    greatest(p.updated_at, i.updated_at, g.updated_at) as updated_at
from {{ source('lake', 'pedidos') }} p
left join itens i using (id_pedido)
left join pagamentos g using (id_pedido)
