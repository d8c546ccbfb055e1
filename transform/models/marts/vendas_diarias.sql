-- Sales per day (orders not cancelled).
select
    cast(data_pedido as date) as dia,
    count(*)::integer as pedidos,
    count(distinct id_cliente)::integer as clientes,
    sum(valor_total)::decimal(16, 2) as valor_total
from {{ source('lake', 'pedidos') }}
where status <> 'cancelado'
group by 1
