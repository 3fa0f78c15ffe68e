{#- Shared pieces of the models over geometry series. -#}

{#- One series: a (run, sample set, sample, layer, module) ordered by step. A NULL
    sample_id (pooled rows) is a series of its own: window partitions group NULLs. -#}
{% macro partition() -%}
PARTITION BY run_id, sample_set, sample_id, layer, module
{%- endmacro %}

{#- A descriptor as DOUBLE with NaN read as NULL. -#}
{% macro nan_as_null(column) -%}
CASE WHEN isnan({{ column }}) THEN NULL ELSE {{ column }}::DOUBLE END
{%- endmacro %}
