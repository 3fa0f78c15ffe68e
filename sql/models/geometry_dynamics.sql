-- name: geometry_dynamics
-- version: dyn@1
-- target: geometry_dynamics
-- kind: per_run
-- grain: run_id, sample_set, sample_id, layer, module, step
-- param volatility_window: int = 5 in [2, 100] | captures in the volatility window
-- description: Layer B dynamics of every geometry_state series (run, sample set, sample,
--   layer, module, ordered by step): per descriptor the delta, velocity, acceleration and
--   volatility of the velocity; then the drift of the scale-normalised descriptors.
{% import 'macros/series.sql' as series %}
{% set drift_descriptors = ['eff_rank', 'sv_entropy', 'sparsity', 'act_norm'] %}
{% set w = params.volatility_window %}
{#- captures looked back at: the volatility window, and two for the acceleration #}
{% set depth = [w, 2] | max %}

-- A single sort: one window pass over an integer series id takes each capture with the
-- `depth` captures before it and the first one. Velocities, accelerations, volatility
-- and drift are then plain arithmetic on those columns.
WITH captures AS (
    -- NaN and infinity count as NULL. Values stay FLOAT through the sort (half the bytes to
    -- move); every computation casts them to DOUBLE first, which is exact.
    SELECT
        run_id, step, seed, sample_set, sample_id, layer, module,
        {%- for d in descriptors %}
        {{ series.finite_or_null(d) }} AS {{ d }}{{ "," if not loop.last }}
        {%- endfor %}
    FROM geometry_state
),

series_scales AS (
    -- one row per series: an integer id, cheap to sort on, and the robust scale of each
    -- drift descriptor, floored so that a flat series does not divide by 0
    SELECT
        run_id, sample_set, sample_id, layer, module,
        row_number() OVER () AS series_id,
        {%- for d in drift_descriptors %}
        greatest(1.4826 * mad({{ d }}::DOUBLE), 1e-9 + 1e-3 * abs(median({{ d }}::DOUBLE))) AS {{ d }}_scale{{ "," if not loop.last }}
        {%- endfor %}
    FROM captures
    GROUP BY run_id, sample_set, sample_id, layer, module
),

history AS (
    -- x_k is the value k captures back (x_0 the current one), x_init the first capture's
    SELECT
        c.run_id, c.step, c.seed, c.sample_set, c.sample_id, c.layer, c.module,
        {%- for d in drift_descriptors %}
        s.{{ d }}_scale,
        {%- endfor %}
        c.step AS step_0,
        {%- for k in range(1, depth + 1) %}
        lag(c.step, {{ k }}) OVER by_step AS step_{{ k }},
        {%- endfor %}
        {%- for d in descriptors %}
        c.{{ d }}::DOUBLE AS {{ d }}_0,
        {%- for k in range(1, depth + 1) %}
        CAST(lag(c.{{ d }}, {{ k }}) OVER by_step AS DOUBLE) AS {{ d }}_{{ k }},
        {%- endfor %}
        CAST(first_value(c.{{ d }}) OVER by_step AS DOUBLE) AS {{ d }}_init{{ "," if not loop.last }}
        {%- endfor %}
    FROM captures AS c
    JOIN series_scales AS s
        -- a pooled series has sample_id NULL, hence IS NOT DISTINCT FROM
        ON c.run_id = s.run_id
        AND c.sample_set = s.sample_set
        AND c.sample_id IS NOT DISTINCT FROM s.sample_id
        AND c.layer = s.layer
        AND c.module = s.module
    WINDOW by_step AS (PARTITION BY s.series_id ORDER BY c.step)
),

velocities AS (
    -- v_k: the velocity k captures back, for the acceleration (v_0, v_1) and the window
    SELECT
        *,
        {%- for d in descriptors %}
        {%- for k in range(depth) %}
        ({{ d }}_{{ k }} - {{ d }}_{{ k + 1 }}) / (step_{{ k }} - step_{{ k + 1 }}) AS {{ d }}_v{{ k }},
        {%- endfor %}
        {%- endfor %}
        principal_angle_prev_0 / (step_0 - step_1) AS alignment_velocity
    FROM history
),

drift AS (
    SELECT
        *,
        {{ series.scaled_norm(drift_descriptors, "{}_v0") }} AS drift_velocity,
        {{ series.scaled_norm(drift_descriptors, "{}_v1") }} AS prev_drift_velocity,
        {{ series.scaled_norm(drift_descriptors, "({}_0 - {}_init)") }} AS drift_from_init
    FROM velocities
)

-- Per descriptor d (the contract's descriptors: eff_rank, sv_entropy, ...) four columns,
-- d_delta, d_velocity, d_accel and d_volatility (eff_rank_delta, eff_rank_velocity, ...).
SELECT
    run_id, step, seed, sample_set, sample_id, layer, module,
    {%- for d in descriptors %}
    ({{ d }}_0 - {{ d }}_1)::FLOAT AS {{ d }}_delta,
    {{ d }}_v0::FLOAT AS {{ d }}_velocity,
    (({{ d }}_v0 - {{ d }}_v1) / (step_0 - step_1))::FLOAT AS {{ d }}_accel,
    -- sample std (ddof 1) of the window's non-NULL velocities; NULL below 2 values
    list_stddev_samp([{% for k in range(w) %}{{ d }}_v{{ k }}{{ ", " if not loop.last }}{% endfor %}])::FLOAT AS {{ d }}_volatility,
    {%- endfor %}
    drift_velocity::FLOAT AS drift_velocity,
    ((drift_velocity - prev_drift_velocity) / (step_0 - step_1))::FLOAT AS drift_accel,
    drift_from_init::FLOAT AS drift_from_init,
    alignment_velocity::FLOAT AS alignment_velocity,
    {{ volatility_window }}::SMALLINT AS volatility_window
FROM drift
