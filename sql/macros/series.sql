{#- Shared pieces of the models over geometry series. -#}

{#- One series: a (run, sample set, sample, layer, module) ordered by step. A NULL
    sample_id (pooled rows) is a series of its own: window partitions group NULLs. -#}
{% macro partition() -%}
PARTITION BY run_id, sample_set, sample_id, layer, module
{%- endmacro %}

{#- A descriptor as DOUBLE with NaN (and infinity) read as NULL. isfinite, not isnan:
    DuckDB folds isnan() to false from Parquet statistics that exclude NaN. -#}
{% macro finite_or_null(column) -%}
CASE WHEN isfinite({{ column }}) THEN {{ column }}::DOUBLE END
{%- endmacro %}

{#- sqrt(sum over descriptors d of (term(d) / d_scale)^2); `term` names d with {}. -#}
{% macro scaled_norm(descriptors, term) -%}
sqrt(
    {%- for d in descriptors %}
            ({{ term.replace("{}", d) }} / {{ d }}_scale) ^ 2{{ " +" if not loop.last }}
    {%- endfor %}
        )
{%- endmacro %}
