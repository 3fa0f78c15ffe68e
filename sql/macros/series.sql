{#- Shared pieces of the models over geometry series. -#}

{#- A value with NaN (and infinity) read as NULL. isfinite, not isnan:
    DuckDB folds isnan() to false from Parquet statistics that exclude NaN. -#}
{% macro finite_or_null(column) -%}
CASE WHEN isfinite({{ column }}) THEN {{ column }} END
{%- endmacro %}

{#- sqrt(sum over descriptors d of (term(d) / d_scale)^2); `term` names d with {}. -#}
{% macro scaled_norm(descriptors, term) -%}
sqrt(
    {%- for d in descriptors %}
            ({{ term.replace("{}", d) }} / {{ d }}_scale) ^ 2{{ " +" if not loop.last }}
    {%- endfor %}
        )
{%- endmacro %}
