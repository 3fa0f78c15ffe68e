-- name: events_candidates
-- version: cpd@1
-- target: events_candidates
-- kind: per_run
-- grain: run_id, event_type, layer, metric, step
-- param w: int = 5 in [2, 100] | captures in the baseline window and in the post window
-- param z_min: float = 4.0 > 0 | robust z from which a capture index is a candidate
-- param tolerance: int = 2 >= 0 | captures within which another layer's peak counts for coherence
-- param sample_set: str = '' | sample set analysed; '' = per run, the alphabetically first with pooled rows
-- description: Change points of the pooled geometry series of every run (cpd@1): per
--   <module>.<descriptor> series, the median of the w captures from i against the median
--   of the w captures before it, in units of the series' first-difference noise; each run
--   of consecutive candidate indices is one event, reported at the index of the largest
--   mean contrast, scored by size, volatility change, coherence across layers and novelty.
--   Composite events do the same per layer on the root mean square of its metrics' z.
{% import 'macros/series.sql' as series %}
{% set w = params.w %}
{#- the single-metric diagnostics, and the name of each one's JSON column (composite events) #}
{% set diagnostics = ['metric_size', 'metric_z', 'baseline_median', 'baseline_mad',
                      'volatility_event', 'volatility_baseline', 'volatility_ratio'] %}
{% set json_names = {'metric_size': 'metric_sizes_json'} %}

{#- The indices of a series whose z reaches z_min, each tagged with its stretch of
    consecutive indices (they share i - row_number). -#}
{% macro candidate_stretches(source, z, series_keys) -%}
SELECT
        *,
        i - row_number() OVER (PARTITION BY {{ series_keys }} ORDER BY i) AS stretch
    FROM {{ source }}
    WHERE {{ z }} >= {{ z_min }}
{%- endmacro %}

{#- One row per stretch: its peak, the index of the largest `peak_by` (earliest on ties),
    with the steps of the stretch's first and last index. -#}
{% macro stretch_peaks(source, series_keys, peak_by) -%}
SELECT
        *,
        min(step) OVER stretch AS start_step,
        max(step) OVER stretch AS end_step,
        row_number() OVER (stretch ORDER BY {{ peak_by }} DESC, i) AS rank_in_stretch
    FROM {{ source }}
    WINDOW stretch AS (PARTITION BY {{ series_keys }}, stretch)
    QUALIFY rank_in_stretch = 1
{%- endmacro %}

-- A window pass over the analysed series takes each capture with the w - 1 after it, as
-- columns; the statistics of that window of w captures (median, MAD, mean, volatility)
-- are list functions over a list of w values, far cheaper than windowed medians, and are
-- computed once per window: a second pass pairs each capture's window (its post window)
-- with the one w captures earlier (its baseline). Events are then found on the candidate
-- rows only, and the cross-layer medians and composite JSON at the peaks only.
WITH pooled_sample_sets AS (
    {{ series.analysed_sample_sets(sample_set) }}
),

analysed_sample_sets AS (
    -- A run with pooled rows (in the chosen sample set) is analysed on its pooled series.
    -- A run with only per-sample rows there takes the same choice of sample set among its
    -- per-sample rows (the chosen one, else the alphabetically first), and the median
    -- across its samples per step stands in for the pooled value.
    SELECT run_id, sample_set, TRUE AS pooled
    FROM pooled_sample_sets
    UNION ALL
    SELECT g.run_id, min(g.sample_set) AS sample_set, FALSE AS pooled
    FROM geometry_state AS g
    ANTI JOIN pooled_sample_sets AS p ON g.run_id = p.run_id
    WHERE {{ sample_set }} = '' OR g.sample_set = {{ sample_set }}
    GROUP BY g.run_id
),

pooled_captures AS (
    -- NaN and infinity count as NULL; DOUBLE from here on (float32 widens exactly)
    SELECT
        g.run_id, g.layer, g.module, g.step,
        {%- for d in descriptors %}
        CAST({{ series.finite_or_null('g.' ~ d) }} AS DOUBLE) AS {{ d }}{{ "," if not loop.last }}
        {%- endfor %}
    FROM geometry_state AS g
    JOIN analysed_sample_sets AS a ON g.run_id = a.run_id AND g.sample_set = a.sample_set
    WHERE a.pooled AND g.sample_id IS NULL
),

sample_median_captures AS (
    -- median skips NULLs (and is NULL over none); an even count averages the middle two
    SELECT
        g.run_id, g.layer, g.module, g.step,
        {%- for d in descriptors %}
        median(CAST({{ series.finite_or_null('g.' ~ d) }} AS DOUBLE)) AS {{ d }}{{ "," if not loop.last }}
        {%- endfor %}
    FROM geometry_state AS g
    JOIN analysed_sample_sets AS a ON g.run_id = a.run_id AND g.sample_set = a.sample_set
    WHERE NOT a.pooled AND g.sample_id IS NOT NULL
    GROUP BY g.run_id, g.layer, g.module, g.step
),

captures AS (
    SELECT * FROM pooled_captures
    UNION ALL
    SELECT * FROM sample_median_captures
),

neighbours AS (
    -- i is the capture index; d_a{k} the value k captures later (d_a0 the capture itself),
    -- d_prev the one before. A NULL stays in its place: windows skip it, and i is still
    -- the capture index.
    SELECT
        run_id, layer, module, step,
        row_number() OVER by_step - 1 AS i,
        count(*) OVER (PARTITION BY run_id, layer, module) AS n,
        {%- for d in descriptors %}
        lag({{ d }}) OVER by_step AS {{ d }}_prev,
        {%- for k in range(1, w) %}
        lead({{ d }}, {{ k }}) OVER by_step AS {{ d }}_a{{ k }},
        {%- endfor %}
        {{ d }} AS {{ d }}_a0{{ "," if not loop.last }}
        {%- endfor %}
    FROM captures
    WINDOW by_step AS (PARTITION BY run_id, layer, module ORDER BY step)
),

series_noise AS (
    -- Noise scale of each whole series from its first differences between consecutive
    -- captures (a difference touching a NULL is NULL and skipped): a few level shifts
    -- barely move their median. has_d: the series has a value of d at all (a layer
    -- without one has no series of that metric, for coherence).
    SELECT
        run_id, layer, module,
        {%- for d in descriptors %}
        1.4826 * median(abs({{ d }}_a0 - {{ d }}_prev)) / sqrt(2) AS {{ d }}_sigma,
        count({{ d }}_a0) > 0 AS has_{{ d }}{{ "," if not loop.last }}
        {%- endfor %}
    FROM neighbours
    GROUP BY run_id, layer, module
),

window_lists AS (
    -- The window of w captures from each capture on, and its w - 1 first differences (a
    -- difference touching a NULL is NULL; the statistics skip NULLs). A window is the post
    -- window P of its first capture and the baseline B of the capture w later, so its
    -- statistics are computed once and serve both.
    SELECT
        run_id, layer, module, step, i, n,
        {%- for d in descriptors %}
        [{% for k in range(w) %}{{ d }}_a{{ k }}{{ ", " if not loop.last }}{% endfor %}] AS {{ d }}_window,
        [{% for k in range(1, w) %}{{ d }}_a{{ k }} - {{ d }}_a{{ k - 1 }}{{ ", " if not loop.last }}{% endfor %}] AS {{ d }}_window_diffs{{ "," if not loop.last }}
        {%- endfor %}
    FROM neighbours
),

window_medians AS (
    SELECT
        *,
        {%- for d in descriptors %}
        list_median({{ d }}_window) AS {{ d }}_median{{ "," if not loop.last }}
        {%- endfor %}
    FROM window_lists
),

window_stats AS (
    -- median, MAD, mean and volatility (population std of the first differences) per window
    SELECT
        run_id, layer, module, step, i, n,
        {%- for d in descriptors %}
        {{ d }}_median,
        list_median(list_transform({{ d }}_window, lambda x: abs(x - {{ d }}_median))) AS {{ d }}_mad,
        list_avg({{ d }}_window) AS {{ d }}_mean,
        list_stddev_pop({{ d }}_window_diffs) AS {{ d }}_volatility{{ "," if not loop.last }}
        {%- endfor %}
    FROM window_medians
),

paired_windows AS (
    -- at i the baseline B = x_{i-w..i-1} is the window from i - w, the post window
    -- P = x_{i..i+w-1} the window from i
    SELECT
        run_id, layer, module, step, i, n,
        {%- for d in descriptors %}
        lag({{ d }}_median, {{ w }}) OVER by_step AS {{ d }}_baseline_median,
        lag({{ d }}_mad, {{ w }}) OVER by_step AS {{ d }}_baseline_mad,
        lag({{ d }}_mean, {{ w }}) OVER by_step AS {{ d }}_baseline_mean,
        lag({{ d }}_volatility, {{ w }}) OVER by_step AS {{ d }}_volatility_baseline,
        {{ d }}_median AS {{ d }}_post_median,
        {{ d }}_mean AS {{ d }}_post_mean,
        {{ d }}_volatility AS {{ d }}_volatility_event{{ "," if not loop.last }}
        {%- endfor %}
    FROM window_stats
    WINDOW by_step AS (PARTITION BY run_id, layer, module ORDER BY step)
),

scored_windows AS (
    -- only where both windows lie inside the series: w <= i <= n - w (filtered after the
    -- lags above, which need the earlier captures)
    SELECT p.*, {% for d in descriptors %}s.{{ d }}_sigma{{ ", " if not loop.last }}{% endfor %}
    FROM paired_windows AS p
    JOIN series_noise AS s ON p.run_id = s.run_id AND p.layer = s.layer AND p.module = s.module
    WHERE p.i BETWEEN {{ w }} AND p.n - {{ w }}
),

metrics AS (
    -- one row per (run, layer, metric, i): the metric's window statistics at i
    {%- for d in descriptors %}
    SELECT
        run_id, layer, module, module || '.{{ d }}' AS metric, step, i,
        {{ d }}_sigma AS sigma,
        {{ d }}_baseline_median AS baseline_median,
        {{ d }}_baseline_mad AS baseline_mad,
        {{ d }}_post_median - {{ d }}_baseline_median AS metric_size,
        -- the mean contrast picks the peak: it is largest exactly at a clean step, where
        -- the medians tie across the w captures around it
        abs({{ d }}_post_mean - {{ d }}_baseline_mean) AS mean_contrast,
        {{ d }}_volatility_baseline AS volatility_baseline,
        {{ d }}_volatility_event AS volatility_event
    FROM scored_windows
    {%- if not loop.last %}
    UNION ALL
    {%- endif %}
    {%- endfor %}
),

metric_scores AS (
    -- The floors of m and of the volatility denominator are maxima of formula terms, so a
    -- NULL term gives NULL (DuckDB's greatest would skip it): a series without any two
    -- consecutive values has no noise scale, hence no z.
    SELECT
        *,
        abs(metric_size) / (1.4826 * CASE WHEN sigma IS NOT NULL AND baseline_mad IS NOT NULL
            THEN greatest(baseline_mad, sigma / 1.4826, 1e-6 * abs(baseline_median), 1e-12) END) AS metric_z,
        volatility_event / CASE WHEN volatility_baseline IS NOT NULL
            THEN greatest(volatility_baseline, 1e-12) END AS volatility_ratio
    FROM metrics
),

metric_candidates AS (
    -- candidate indices; consecutive ones share i - row_number (a NULL z is no candidate,
    -- so it breaks a run)
    {{ candidate_stretches('metric_scores', 'metric_z', 'run_id, layer, metric') }}
),

metric_peaks AS (
    -- each stretch of candidates is one event, reported at its largest mean contrast
    -- (earliest on ties), with the steps of its first and last index
    {{ stretch_peaks('metric_candidates', 'run_id, layer, metric', 'mean_contrast') }}
),

peak_layer_ratios AS (
    -- the median volatility_ratio over the run's layers (the peak's own included) at each
    -- peak's metric and capture index; computed at the peaks only
    SELECT r.run_id, r.metric, r.i, median(r.volatility_ratio) AS volatility_ratio_agg
    FROM metric_scores AS r
    JOIN (SELECT DISTINCT run_id, metric, i FROM metric_peaks) AS p
        ON r.run_id = p.run_id AND r.metric = p.metric AND r.i = p.i
    GROUP BY r.run_id, r.metric, r.i
),

composite_scores AS (
    -- Per (run, layer, i): the root mean square of the z of the layer's metrics with a
    -- value at i (metrics align by capture index: the modules of a layer share steps, and
    -- min() names that step).
    SELECT
        run_id, layer, i,
        min(step) AS step,
        sqrt(avg(metric_z * metric_z)) AS composite_z
    FROM metric_scores
    GROUP BY run_id, layer, i
),

composite_candidates AS (
    {{ candidate_stretches('composite_scores', 'composite_z', 'run_id, layer') }}
),

composite_peaks AS (
    -- a composite event peaks at its largest composite z (earliest on ties)
    {{ stretch_peaks('composite_candidates', 'run_id, layer', 'composite_z') }}
),

layer_metrics AS (
    -- every metric of every layer of the run (the layer has captures of its module), and
    -- whether it has some value: a layer with none has no series of that metric
    {%- for d in descriptors %}
    SELECT run_id, layer, module || '.{{ d }}' AS metric, has_{{ d }} AS has_values FROM series_noise
    {%- if not loop.last %}
    UNION ALL
    {%- endif %}
    {%- endfor %}
),

composite_metrics AS (
    -- every metric of the layer at a composite peak (one without any value too), NULL
    -- where it has no value there
    SELECT
        c.run_id, c.layer, c.i, lm.metric,
        {%- for col in diagnostics %}
        m.{{ col }}{{ "," if not loop.last }}
        {%- endfor %}
    FROM composite_peaks AS c
    JOIN layer_metrics AS lm ON c.run_id = lm.run_id AND c.layer = lm.layer
    LEFT JOIN metric_scores AS m ON c.run_id = m.run_id AND c.layer = m.layer AND lm.metric = m.metric AND c.i = m.i
),

composite_diagnostics AS (
    -- The median of the metrics' volatility ratios at the peak, and the JSON objects keyed
    -- by metric, in metric order (the same bytes for the same values). Each number is the
    -- FLOAT the single-metric column would hold, in its shortest text that reads back to
    -- it (finite by construction: the denominators have floors); null for NULL.
    SELECT
        run_id, layer, i,
        median(volatility_ratio) AS structure_ratio,
        {%- for col in diagnostics %}
        '{' || string_agg(
            CAST(to_json(metric) AS VARCHAR) || ':' || coalesce(CAST(CAST({{ col }} AS FLOAT) AS VARCHAR), 'null'), ','
            ORDER BY metric
        ) || '}' AS {{ json_names.get(col, col ~ '_json') }}{{ "," if not loop.last }}
        {%- endfor %}
    FROM composite_metrics
    GROUP BY run_id, layer, i
),

all_events AS (
    SELECT
        p.run_id, p.layer, p.metric, 'change_point' AS event_type, p.i, p.step, p.start_step, p.end_step,
        p.metric_z AS magnitude,
        p.volatility_ratio AS structure_ratio,
        {%- for col in diagnostics %}
        p.{{ col }},
        {%- endfor %}
        r.volatility_ratio_agg,
        -- the per-metric JSON is for composite events only
        {%- for col in diagnostics %}
        CAST(NULL AS VARCHAR) AS {{ json_names.get(col, col ~ '_json') }}{{ "," if not loop.last }}
        {%- endfor %}
    FROM metric_peaks AS p
    JOIN peak_layer_ratios AS r ON p.run_id = r.run_id AND p.metric = r.metric AND p.i = r.i
    UNION ALL
    SELECT
        c.run_id, c.layer, '__composite__' AS metric, 'change_point_composite' AS event_type, c.i, c.step,
        c.start_step, c.end_step,
        c.composite_z AS magnitude,
        j.structure_ratio,
        -- the single-metric diagnostics are NULL on a composite event
        {%- for col in diagnostics + ['volatility_ratio_agg'] %}
        NULL AS {{ col }},
        {%- endfor %}
        {%- for col in diagnostics %}
        j.{{ json_names.get(col, col ~ '_json') }}{{ "," if not loop.last }}
        {%- endfor %}
    FROM composite_peaks AS c
    JOIN composite_diagnostics AS j ON c.run_id = j.run_id AND c.layer = j.layer AND c.i = j.i
),

layers_with_series AS (
    -- the layers with a series of each metric, and of the composite (a series of any metric)
    SELECT run_id, layer, metric FROM layer_metrics WHERE has_values
    UNION ALL
    SELECT DISTINCT run_id, layer, '__composite__' AS metric FROM layer_metrics WHERE has_values
),

other_layers AS (
    -- per run and metric: the number of layers with a series, less the event's own
    SELECT run_id, metric, count(*) - 1 AS n_other_layers
    FROM layers_with_series
    GROUP BY run_id, metric
),

nearby_layers AS (
    -- other layers with an event of the same metric whose peak index is within tolerance
    SELECT e.run_id, e.layer, e.metric, e.i, count(DISTINCT o.layer) AS n_nearby
    FROM all_events AS e
    JOIN all_events AS o
        ON e.run_id = o.run_id
        AND e.metric = o.metric
        AND o.layer <> e.layer
        AND abs(o.i - e.i) <= {{ tolerance }}
    GROUP BY e.run_id, e.layer, e.metric, e.i
),

scored_events AS (
    SELECT
        e.*,
        -- a ratio below 1 (calmer after the change) does not raise the score; a NULL ratio
        -- (no first difference in a window) is read as no change of volatility
        1.0 / (1.0 + greatest(0.0, coalesce(log2(e.structure_ratio), 0.0))) AS structure_modifier,
        CASE WHEN o.n_other_layers > 0 THEN CAST(coalesce(nl.n_nearby, 0) AS DOUBLE) / o.n_other_layers ELSE 1.0 END AS coherence,
        -- 1 / (1 + the number of earlier events in the same series)
        1.0 / rank() OVER (PARTITION BY e.run_id, e.layer, e.metric ORDER BY e.step) AS novelty
    FROM all_events AS e
    JOIN other_layers AS o ON e.run_id = o.run_id AND e.metric = o.metric
    LEFT JOIN nearby_layers AS nl
        ON e.run_id = nl.run_id AND e.layer = nl.layer AND e.metric = nl.metric AND e.i = nl.i
)

SELECT
    run_id,
    substr(sha256(concat_ws('|', run_id, getvariable('analysis_id'), layer, metric, step, event_type)), 1, 32) AS event_id,
    CAST(layer AS SMALLINT) AS layer,
    metric,
    CAST(step AS BIGINT) AS step,
    CAST(start_step AS BIGINT) AS start_step,
    CAST(end_step AS BIGINT) AS end_step,
    event_type,
    CAST(magnitude * structure_modifier * coherence * novelty AS FLOAT) AS score,
    CAST(magnitude AS FLOAT) AS magnitude,
    CAST(structure_modifier AS FLOAT) AS structure_modifier,
    CAST(magnitude * structure_modifier AS FLOAT) AS magnitude_eff,
    CAST(coherence AS FLOAT) AS coherence,
    CAST(novelty AS FLOAT) AS novelty,
    {%- for col in diagnostics + ['volatility_ratio_agg'] %}
    CAST({{ col }} AS FLOAT) AS {{ col }},
    {%- endfor %}
    {%- for col in diagnostics %}
    {{ json_names.get(col, col ~ '_json') }}{{ "," if not loop.last }}
    {%- endfor %}
FROM scored_events
