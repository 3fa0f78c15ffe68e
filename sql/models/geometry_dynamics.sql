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

WITH captures AS (
    -- NaN and infinity count as NULL; DOUBLE keeps the arithmetic exact before the final FLOAT cast.
    SELECT
        run_id, step, seed, sample_set, sample_id, layer, module,
        {%- for d in descriptors %}
        {{ series.finite_or_null(d) }} AS {{ d }}{{ "," if not loop.last }}
        {%- endfor %}
    FROM geometry_state
),

gaps AS (
    SELECT
        *,
        step - lag(step) OVER by_step AS step_gap,
        {%- for d in descriptors %}
        {{ d }} - lag({{ d }}) OVER by_step AS {{ d }}_delta,
        {{ d }} - first_value({{ d }}) OVER by_step AS {{ d }}_from_init,
        {%- endfor %}
        {%- for d in drift_descriptors %}
        -- robust scale of the whole series, floored so a flat series does not divide by 0
        greatest(
            1.4826 * mad({{ d }}) OVER whole_series,
            1e-9 + 1e-3 * abs(median({{ d }}) OVER whole_series)
        ) AS {{ d }}_scale{{ "," if not loop.last }}
        {%- endfor %}
    FROM captures
    WINDOW
        by_step AS ({{ series.partition() }} ORDER BY step),
        whole_series AS ({{ series.partition() }})
),

velocities AS (
    SELECT
        *,
        {%- for d in descriptors %}
        {{ d }}_delta / step_gap AS {{ d }}_velocity,
        {%- endfor %}
        principal_angle_prev / step_gap AS alignment_velocity
    FROM gaps
),

accelerations AS (
    SELECT
        *,
        {%- for d in descriptors %}
        ({{ d }}_velocity - lag({{ d }}_velocity) OVER by_step) / step_gap AS {{ d }}_accel,
        -- sample std over the window, clipped at the series start; NULL below 2 values
        stddev_samp({{ d }}_velocity) OVER recent AS {{ d }}_volatility,
        {%- endfor %}
        sqrt(
            {%- for d in drift_descriptors %}
            ({{ d }}_velocity / {{ d }}_scale) ^ 2{{ " +" if not loop.last }}
            {%- endfor %}
        ) AS drift_velocity,
        sqrt(
            {%- for d in drift_descriptors %}
            ({{ d }}_from_init / {{ d }}_scale) ^ 2{{ " +" if not loop.last }}
            {%- endfor %}
        ) AS drift_from_init
    FROM velocities
    WINDOW
        by_step AS ({{ series.partition() }} ORDER BY step),
        recent AS (
            {{ series.partition() }} ORDER BY step
            ROWS BETWEEN {{ volatility_window }} - 1 PRECEDING AND CURRENT ROW
        )
),

drift AS (
    SELECT
        *,
        (drift_velocity - lag(drift_velocity) OVER by_step) / step_gap AS drift_accel
    FROM accelerations
    WINDOW by_step AS ({{ series.partition() }} ORDER BY step)
)

SELECT
    run_id, step, seed, sample_set, sample_id, layer, module,
    {%- for d in descriptors %}
    {%- for part in ['delta', 'velocity', 'accel', 'volatility'] %}
    {{ d }}_{{ part }}::FLOAT AS {{ d }}_{{ part }},
    {%- endfor %}
    {%- endfor %}
    drift_velocity::FLOAT AS drift_velocity,
    drift_accel::FLOAT AS drift_accel,
    drift_from_init::FLOAT AS drift_from_init,
    alignment_velocity::FLOAT AS alignment_velocity,
    {{ volatility_window }}::SMALLINT AS volatility_window
FROM drift
