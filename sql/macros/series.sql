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

{#- The sample set each run is analysed on: `chosen` (a string literal) when not empty,
    else the alphabetically first sample set with pooled rows (sample_id NULL). -#}
{% macro analysed_sample_sets(chosen) -%}
SELECT run_id, min(sample_set) AS sample_set
FROM geometry_state
WHERE sample_id IS NULL AND ({{ chosen }} = '' OR sample_set = {{ chosen }})
GROUP BY run_id
{%- endmacro %}

{#- First and last pooled step of every (run, sample set, layer, module) series (of the
    runs listed by the relation `runs`, if given). -#}
{% macro series_spans(runs=none) -%}
SELECT run_id, sample_set, layer, module, min(step) AS first_step, max(step) AS last_step
FROM geometry_state
WHERE sample_id IS NULL{{ only_runs(runs) }}
GROUP BY run_id, sample_set, layer, module
{%- endmacro %}

{#- A filter on run_id, read before any other work: nothing, or the runs of relation `runs`. -#}
{% macro only_runs(runs) -%}
{% if runs %} AND run_id IN (SELECT run_id FROM {{ runs }}){% endif %}
{%- endmacro %}

{#- Normalised time of `step` in a series spanning first .. last: 0 for a single capture. -#}
{% macro normalised_t(step, first, last) -%}
CASE WHEN {{ last }} = {{ first }} THEN 0.0 ELSE ({{ step }} - {{ first }})::DOUBLE / ({{ last }} - {{ first }}) END
{%- endmacro %}
