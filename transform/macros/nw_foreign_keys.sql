{#-
  Tell nw (and the original project's loader) the foreign keys of a mart, in fk_metadata (the original
  format: table_name, column_name, ref_table, ref_column). A declared DuckDB FOREIGN KEY would stop dbt
  from rebuilding the parent mart, so marts declare theirs here, as a post-hook:
      post_hook: "{{ nw_foreign_keys([('id_cliente', 'cliente_valor', 'id_cliente')]) }}"
-#}
{% macro nw_foreign_keys(keys) -%}
  CREATE TABLE IF NOT EXISTS main.fk_metadata (table_name VARCHAR, column_name VARCHAR, ref_table VARCHAR, ref_column VARCHAR,
                                               PRIMARY KEY (table_name, column_name));
  DELETE FROM main.fk_metadata WHERE table_name = '{{ this.identifier }}';
  {%- for column, ref_table, ref_column in keys %}
  INSERT INTO main.fk_metadata VALUES ('{{ this.identifier }}', '{{ column }}', '{{ ref_table }}', '{{ ref_column }}');
  {%- endfor %}
{%- endmacro %}
