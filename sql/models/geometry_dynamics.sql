-- name: geometry_dynamics
-- version: dyn@1
-- target: geometry_dynamics
-- materialization: lake
-- incremental: run_id
-- grain: run_id, sample_set, sample_id, layer, module, step
-- param volatility_window: int = 5 | captures in the volatility window
-- description: Layer B dynamics of every geometry_state series (run, sample set, sample,
--   layer, module, ordered by step): per descriptor the delta, velocity, acceleration and
--   volatility of the velocity; then the drift of the scale-normalised descriptors.
{% import 'macros/series.sql' as series %}
{% set drift_descriptors = ['eff_rank', 'sv_entropy', 'sparsity', 'act_norm'] %}

-- Two window passes in all: the first takes the previous two captures and the first one,
-- so velocities, accelerations and drift need no further sort; the second is the
-- volatility frame. Series scales are a GROUP BY joined back, cheaper than windowed medians.
WITH captures AS (
    -- NaN and infinity count as NULL; DOUBLE keeps the arithmetic exact before the FLOAT cast.
    SELECT
        run_id, step, seed, sample_set, sample_id, layer, module,
        {%- for d in descriptors %}
        {{ series.finite_or_null(d) }} AS {{ d }}{{ "," if not loop.last }}
        {%- endfor %}
    FROM geometry_state
),

scales AS (
    -- robust scale of the whole series, floored so that a flat series does not divide by 0
    SELECT
        run_id, sample_set, sample_id, layer, module,
        {%- for d in drift_descriptors %}
        greatest(1.4826 * mad({{ d }}), 1e-9 + 1e-3 * abs(median({{ d }}))) AS {{ d }}_scale{{ "," if not loop.last }}
        {%- endfor %}
    FROM captures
    GROUP BY run_id, sample_set, sample_id, layer, module
),

lagged AS (
    SELECT
        c.*,
        {%- for d in drift_descriptors %}
        s.{{ d }}_scale,
        {%- endfor %}
        c.step - lag(c.step) OVER by_step AS step_gap,
        lag(c.step) OVER by_step - lag(c.step, 2) OVER by_step AS prev_step_gap,
        {%- for d in descriptors %}
        lag(c.{{ d }}) OVER by_step AS {{ d }}_prev,
        lag(c.{{ d }}, 2) OVER by_step AS {{ d }}_prev2,
        first_value(c.{{ d }}) OVER by_step AS {{ d }}_init{{ "," if not loop.last }}
        {%- endfor %}
    FROM captures AS c
    JOIN scales AS s
        -- a pooled series has sample_id NULL, hence IS NOT DISTINCT FROM
        ON c.run_id = s.run_id
        AND c.sample_set = s.sample_set
        AND c.sample_id IS NOT DISTINCT FROM s.sample_id
        AND c.layer = s.layer
        AND c.module = s.module
    WINDOW by_step AS (PARTITION BY c.run_id, c.sample_set, c.sample_id, c.layer, c.module ORDER BY c.step)
),

velocities AS (
    SELECT
        *,
        {%- for d in descriptors %}
        {{ d }} - {{ d }}_prev AS {{ d }}_delta,
        ({{ d }} - {{ d }}_prev) / step_gap AS {{ d }}_velocity,
        ({{ d }}_prev - {{ d }}_prev2) / prev_step_gap AS {{ d }}_prev_velocity,
        {%- endfor %}
        principal_angle_prev / step_gap AS alignment_velocity
    FROM lagged
),

drift AS (
    SELECT
        *,
        -- NULL when any term is NULL
        {{ series.scaled_norm(drift_descriptors, "{}_velocity") }} AS drift_velocity,
        {{ series.scaled_norm(drift_descriptors, "{}_prev_velocity") }} AS prev_drift_velocity,
        {{ series.scaled_norm(drift_descriptors, "({} - {}_init)") }} AS drift_from_init
    FROM velocities
)

SELECT
    run_id, step, seed, sample_set, sample_id, layer, module,
    {%- for d in descriptors %}
    {{ d }}_delta::FLOAT AS {{ d }}_delta,
    {{ d }}_velocity::FLOAT AS {{ d }}_velocity,
    (({{ d }}_velocity - {{ d }}_prev_velocity) / step_gap)::FLOAT AS {{ d }}_accel,
    -- sample std over the window, clipped at the series start; NULL below 2 values
    (stddev_samp({{ d }}_velocity) OVER recent)::FLOAT AS {{ d }}_volatility,
    {%- endfor %}
    drift_velocity::FLOAT AS drift_velocity,
    ((drift_velocity - prev_drift_velocity) / step_gap)::FLOAT AS drift_accel,
    drift_from_init::FLOAT AS drift_from_init,
    alignment_velocity::FLOAT AS alignment_velocity,
    {{ volatility_window }}::SMALLINT AS volatility_window
FROM drift
WINDOW recent AS (
    {{ series.partition() }} ORDER BY step
    ROWS BETWEEN {{ volatility_window }} - 1 PRECEDING AND CURRENT ROW
)
