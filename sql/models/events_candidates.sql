-- name: events_candidates
-- version: cpd@2.2
-- target: events_candidates
-- kind: per_run
-- grain: run_id, event_type, layer, metric, step
-- batch_divisor: 256
-- param min_scale: int = 4 in [2, 64] | smallest scale G, in captures on each side of a boundary
-- param max_scale: int = 256 in [4, 4096] | largest scale; the scales are min_scale doubled up to it (a series uses those with 4 G <= its captures)
-- param alpha: float = 0.01 in [0.0001, 0.5] | false-alarm level of each scale and contrast (the moving-sum threshold of Eichinger and Kirch, 2018, for one series)
-- param trend_scale: int = 64 in [2, 4096] | from this scale up the level contrast is blind to a local line (a trend over a wide window is no level shift)
-- param clip: float = 3.0 in [0.5, 100] | winsorising: a capture further than clip robust units from its 3-point median is pulled back to that distance
-- param noise_window: int = 64 in [4, 4096] | captures on each side over which the local noise level is taken (at least the scale)
-- param tolerance: int = 2 >= 0 | captures (at least a quarter of the event's scale) within which another layer's event counts for coherence
-- param sample_set: str = '' | sample set analysed; '' = per run, the alphabetically first with pooled rows
-- description: Change points of the pooled geometry series of every run (cpd@2): per
--   <module>.<descriptor> series (NULL captures skipped), three contrasts between the G
--   captures before and from each capture, at scales G = min_scale, 2 min_scale, ...: a
--   level shift (difference of means; from trend_scale up, blind to a line) and a change
--   of slope (a V-shaped contrast blind to a line), both on values winsorised against
--   their 3-point median (at either end, that of the end's three), and a change of variance
--   (difference of mean log absolute second differences, G >= 16). Each is studentised by
--   the local noise (geometric mean of the second differences), centred and scaled by its
--   own median and MAD over the series (trend, season and autocorrelation inflate both), and
--   compared with a moving-sum threshold growing with log(n / G). Local maxima over half a
--   scale are candidates; a candidate is dropped when one at a smaller scale lies within its
--   scale (bottom-up merging), so one change gives one event. Diagnostics come from the
--   detecting scale's windows. Composite events do the same per layer on the root mean
--   square of its metrics' z. cpd@2.1: the cpd@2 formula, with fewer joins (its outputs).
--   cpd@2.2: the same formula; the other layers' volatility at an event comes from running
--   windows over every series (linear in the captures, whatever the number of events and
--   layers), not from each event's windows in every layer.
{% import 'macros/series.sql' as series %}
{% if params.min_scale > params.max_scale %}
{{ refuse('parameter min_scale = %d is above max_scale = %d: no scale is left' % (params.min_scale, params.max_scale)) }}
{% endif %}
{#- the scales, and the contrasts computed at each (variance from 16 captures: below, a
    log-variance contrast cannot reach any useful threshold) -#}
{% set ns = namespace(scales=[], contrasts=[]) %}
{% for k in range(13) %}
{%- set g = params.min_scale * 2 ** k %}
{%- if g <= params.max_scale %}
{%- set ns.scales = ns.scales + [g] %}
{%- for kind in ['level', 'slope'] + (['variance'] if g >= 16 else []) %}
{%- set ns.contrasts = ns.contrasts + [{'kind': kind, 'g': g, 'name': kind ~ '_' ~ g, 'rank': loop.index}] %}
{%- endfor %}
{%- endif %}
{%- endfor %}
{% set contrasts = ns.contrasts %}
{#- the half-widths of the local noise windows: the scale, at least noise_window -#}
{% set spans = namespace(list=[]) %}
{% for g in ns.scales %}{% set spans.list = spans.list + [[g, params.noise_window] | max] %}{% endfor %}
{% set noise_spans = spans.list | unique | list %}
{#- `diagnostics` and `diagnostic_json` (each one's JSON column on composite events) come
    from the contracts #}

{#- The median of three values. -#}
{% macro median3(a, b, c) -%}
greatest(least({{ a }}, {{ b }}), least(greatest({{ a }}, {{ b }}), {{ c }}))
{%- endmacro %}

{#- The moving-sum threshold for a series of n positions at scale g. -#}
{% macro threshold(n, g) -%}
(2 * ln({{ n }} / {{ g }}) + 0.5 * ln(ln({{ n }} / {{ g }})) + ln(1.5) - 0.5 * ln(pi())
            - ln(-ln(sqrt(1 - {{ params.alpha }})))) / sqrt(2 * ln({{ n }} / {{ g }}))
{%- endmacro %}

{#- One row per (series, contrast, position) of `source` whose |z| reaches the threshold:
    its scale, contrast kind (and the kind's rank) and |z|. A position that beats one of
    them within half a scale reaches the threshold too, so local maxima are found among
    these rows alone. -#}
{% macro above_threshold(source, keys, index, n) -%}
{%- for c in contrasts %}
    SELECT {{ keys }}, {{ index }} AS i, step, {{ c.g }} AS scale, '{{ c.kind }}' AS kind, {{ c.rank }} AS kind_rank,
        abs(z_{{ c.name }}) AS z
    FROM {{ source }}
    WHERE abs(z_{{ c.name }}) >= {{ threshold(n, c.g) }}
    {%- if not loop.last %}
    UNION ALL
    {%- endif %}
{%- endfor %}
{%- endmacro %}

{#- The rows of `source` that are the largest |z| of their series and contrast within half a
    scale: none larger or equal before, none larger after (the earliest wins a tie). -#}
{% macro local_maxima(source, keys) -%}
SELECT c.*
    FROM {{ source }} AS c
    ANTI JOIN {{ source }} AS o
        ON {% for k in keys %}o.{{ k }} = c.{{ k }} AND {% endfor %}o.scale = c.scale AND o.kind = c.kind
        AND o.i <> c.i AND abs(o.i - c.i) <= c.scale // 2
        AND (o.z > c.z OR o.z = c.z AND o.i < c.i)
{%- endmacro %}

{#- Bottom-up merging: a peak is dropped when another of the same series lies within its
    scale and comes first (smaller scale, then larger |z|, kind, index). -#}
{% macro merged(source, keys) -%}
SELECT c.*
    FROM {{ source }} AS c
    ANTI JOIN {{ source }} AS o
        ON {% for k in keys %}o.{{ k }} = c.{{ k }} AND {% endfor %}abs(o.i - c.i) < c.scale
        AND (o.scale < c.scale
             OR o.scale = c.scale AND (o.z > c.z
                 OR o.z = c.z AND (o.kind_rank < c.kind_rank OR o.kind_rank = c.kind_rank AND o.i < c.i)))
{%- endmacro %}

-- One sort per series: running sums over the capture index give every window sum at every
-- scale as a difference of two lagged running sums, so all scales and contrasts share one
-- pass and cost the same per capture whatever the series length. Medians (the contrasts'
-- centres and spreads) are per series; events and their window diagnostics are found on
-- the peaks only.
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

metric_values AS (
    -- one row per (run, layer, metric, step) with a value: a NULL capture takes no index
    {%- for d in descriptors %}
    SELECT run_id, layer, module || '.{{ d }}' AS metric, step, {{ d }} AS x
    FROM captures
    WHERE {{ d }} IS NOT NULL
    {%- if not loop.last %}
    UNION ALL
    {%- endif %}
    {%- endfor %}
),

indexed AS (
    -- j: the capture index in the series; the neighbours for the 3-point median and the
    -- second difference
    SELECT
        *,
        row_number() OVER by_step - 1 AS j,
        count(*) OVER (PARTITION BY run_id, layer, metric) AS n,
        lag(x) OVER by_step AS x_prev,
        lead(x) OVER by_step AS x_next,
        lag(x, 2) OVER by_step AS x_prev2,
        lead(x, 2) OVER by_step AS x_next2
    FROM metric_values
    WINDOW by_step AS (PARTITION BY run_id, layer, metric ORDER BY step)
),

smoothed AS (
    -- m: the 3-point median; at either end, the median of the end's three captures (a
    -- first capture far from the rest, as at initialisation, is winsorised too); e: the
    -- second difference
    SELECT
        *,
        CASE WHEN x_prev IS NULL AND x_next2 IS NOT NULL THEN {{ median3('x', 'x_next', 'x_next2') }}
             WHEN x_next IS NULL AND x_prev2 IS NOT NULL THEN {{ median3('x', 'x_prev', 'x_prev2') }}
             WHEN x_prev IS NULL OR x_next IS NULL THEN x
             ELSE {{ median3('x_prev', 'x', 'x_next') }} END AS m,
        x_next - 2 * x + x_prev AS e
    FROM indexed
),

series_scales AS (
    -- the robust spread of the values around their 3-point median (for winsorising), the
    -- floor added inside the logarithm of |e|, and the median value (subtracted before the
    -- running sums, which then stay small)
    SELECT
        run_id, layer, metric,
        1.4826 * median(abs(x - m)) AS spread,
        1e-9 * coalesce(median(abs(e)), 0) + 1e-300 AS log_floor,
        median(x) AS centre
    FROM smoothed
    GROUP BY run_id, layer, metric
),

prepared AS (
    -- y: the winsorised value (centred); u: the log absolute second difference; the floor
    -- of the noise level, 1e-6 of the median level (a piecewise flat series has no noise)
    SELECT
        s.run_id, s.layer, s.metric, s.step, s.j, s.n,
        1e-6 * abs(c.centre) + 1e-12 AS noise_floor,
        s.m - c.centre + least(greatest(s.x - s.m, -{{ params.clip }} * c.spread), {{ params.clip }} * c.spread) AS y,
        ln(abs(s.e) + c.log_floor) AS u
    FROM smoothed AS s
    JOIN series_scales AS c ON s.run_id = c.run_id AND s.layer = c.layer AND s.metric = c.metric
),

running_sums AS (
    -- inclusive running sums over the capture index (u is NULL at either end: counted apart)
    SELECT
        *,
        sum(y) OVER running AS cy,
        sum(j * y) OVER running AS cjy,
        sum(coalesce(u, 0)) OVER running AS cu,
        count(u) OVER running AS cun,
        sum(coalesce(u, 0)) OVER series AS cu_total,
        count(u) OVER series AS cun_total
    FROM prepared
    WINDOW
        series AS (PARTITION BY run_id, layer, metric),
        running AS (series ORDER BY j ROWS UNBOUNDED PRECEDING)
),

window_sums AS (
    -- Sums over the left window [i - G, i) and the right window [i, i + G) of every scale
    -- (NULL where a window leaves the series), and the local noise level over [i - L, i + L)
    -- cut at the series' ends: sigma = exp(mean u + 0.635...) / sqrt 6 (E ln|N(0, 1)| =
    -- -0.635...; a second difference has variance 6 sigma^2), floored
    SELECT
        run_id, layer, metric, step, j, n,
        {%- for g in ns.scales %}
        CASE WHEN j >= {{ g }} AND j + {{ g }} <= n THEN lag(cy, 1, 0) OVER by_j - lag(cy, {{ g + 1 }}, 0) OVER by_j END AS yl_{{ g }},
        CASE WHEN j >= {{ g }} AND j + {{ g }} <= n THEN lead(cy, {{ g - 1 }}) OVER by_j - lag(cy, 1, 0) OVER by_j END AS yr_{{ g }},
        CASE WHEN j >= {{ g }} AND j + {{ g }} <= n THEN lag(cjy, 1, 0) OVER by_j - lag(cjy, {{ g + 1 }}, 0) OVER by_j END AS jl_{{ g }},
        CASE WHEN j >= {{ g }} AND j + {{ g }} <= n THEN lead(cjy, {{ g - 1 }}) OVER by_j - lag(cjy, 1, 0) OVER by_j END AS jr_{{ g }},
        {%- if g >= 16 %}
        CASE WHEN j >= {{ g + 1 }} AND j + {{ g }} <= n - 1 THEN lag(cu, 1, 0) OVER by_j - lag(cu, {{ g + 1 }}, 0) OVER by_j END AS ul_{{ g }},
        CASE WHEN j >= {{ g + 1 }} AND j + {{ g }} <= n - 1 THEN lead(cu, {{ g - 1 }}) OVER by_j - lag(cu, 1, 0) OVER by_j END AS ur_{{ g }},
        {%- endif %}
        {%- endfor %}
        {%- for span in noise_spans %}
        greatest(exp(
            (coalesce(lead(cu, {{ span - 1 }}) OVER by_j, cu_total) - coalesce(lag(cu, {{ span + 1 }}) OVER by_j, 0))
            / nullif(coalesce(lead(cun, {{ span - 1 }}) OVER by_j, cun_total) - coalesce(lag(cun, {{ span + 1 }}) OVER by_j, 0), 0)
            + 0.6351814227307392) / sqrt(6), noise_floor) AS sigma_{{ span }}{{ "," if not loop.last }}
        {%- endfor %}
    FROM running_sums
    WINDOW by_j AS (PARTITION BY run_id, layer, metric ORDER BY j)
),

studentised AS (
    -- z1 of every contrast: its estimate over its standard deviation under independent
    -- noise of the local level; a scale the series is too short for (n < 4 G) has none
    SELECT
        run_id, layer, metric, step, j, n,
        {%- for c in contrasts %}
        {%- set noise = 'sigma_' ~ ([c.g, params.noise_window] | max) %}
        CASE WHEN n >= {{ 4 * c.g }} THEN
        {%- if c.kind == 'level' and c.g < params.trend_scale %}
            (yr_{{ c.g }} - yl_{{ c.g }}) / {{ c.g }} * sqrt({{ c.g }} / 2) / {{ noise }}
        {%- elif c.kind == 'level' %}
            -- the step less its least-squares line, sign(t) / 2 - b t with b = 3 G / (4 G^2 - 1): the
            -- sum of (sign(t) / 2) y less b times the sum of t y, t = j - i + 1/2 on both sides
            ((yr_{{ c.g }} - yl_{{ c.g }}) / 2 - {{ 3 * c.g / (4 * c.g * c.g - 1) }}
                * ((jr_{{ c.g }} - (j - 0.5) * yr_{{ c.g }}) + (jl_{{ c.g }} - (j - 0.5) * yl_{{ c.g }})))
                / sqrt({{ c.g / 2 * (c.g * c.g - 1) / (4 * c.g * c.g - 1) }}) / {{ noise }}
        {%- elif c.kind == 'slope' %}
            -- sum of (|t| - G/2) y / 2 over both windows, |t| = j - i + 1/2 on the right, i - 1/2 - j on the left
            ((jr_{{ c.g }} - (j - 0.5) * yr_{{ c.g }}) + ((j - 0.5) * yl_{{ c.g }} - jl_{{ c.g }})
                - {{ c.g / 2 }} * (yr_{{ c.g }} + yl_{{ c.g }})) / 2 / sqrt({{ c.g * (c.g * c.g - 1) / 24 }}) / {{ noise }}
        {%- else %}
            (ur_{{ c.g }} - ul_{{ c.g }}) / {{ c.g }} * sqrt({{ c.g }} / 2) / 1.1107207345395915
        {%- endif %}
        END AS z1_{{ c.name }}{{ "," if not loop.last }}
        {%- endfor %}
    FROM window_sums
),

contrast_spreads AS (
    -- each contrast's centre, and kappa >= 1: how much trend, season or autocorrelation
    -- widen it beyond independent noise (never narrower: a quiet stretch does not sharpen
    -- the test)
    SELECT
        run_id, layer, metric,
        {%- for c in contrasts %}
        median(z1_{{ c.name }}) AS centre_{{ c.name }},
        greatest(1, 1.4826 * mad(z1_{{ c.name }})) AS kappa_{{ c.name }}{{ "," if not loop.last }}
        {%- endfor %}
    FROM studentised
    GROUP BY run_id, layer, metric
),

normalised AS (
    SELECT
        s.run_id, s.layer, s.metric, s.step, s.j, s.n,
        {%- for c in contrasts %}
        (s.z1_{{ c.name }} - k.centre_{{ c.name }}) / k.kappa_{{ c.name }} AS z_{{ c.name }}{{ "," if not loop.last }}
        {%- endfor %}
    FROM studentised AS s
    JOIN contrast_spreads AS k ON s.run_id = k.run_id AND s.layer = k.layer AND s.metric = k.metric
),

metric_above AS (
    {{ above_threshold('normalised', 'run_id, layer, metric', 'j', 'n') }}
),

metric_peaks AS (
    {{ local_maxima('metric_above', ['run_id', 'layer', 'metric']) }}
),

metric_events AS (
    {{ merged('metric_peaks', ['run_id', 'layer', 'metric']) }}
),

layer_steps AS (
    -- the layer's steps (with a value of any metric) indexed in order; n: its longest series
    SELECT
        run_id, layer, step,
        row_number() OVER (PARTITION BY run_id, layer ORDER BY step) - 1 AS jj,
        max(n) OVER (PARTITION BY run_id, layer) AS n
    FROM (SELECT run_id, layer, step, max(n) AS n FROM indexed GROUP BY run_id, layer, step)
),

composite_z AS (
    -- Per (run, layer, step): the root mean square of the z of the layer's metrics with a z
    -- there (metrics align by step). Computed only where some metric reaches its threshold:
    -- the root mean square never exceeds the largest |z|, and a longer series has the higher
    -- threshold, so nowhere else can the composite reach the layer's.
    SELECT
        z.run_id, z.layer, z.step,
        {%- for c in contrasts %}
        sqrt(avg(z.z_{{ c.name }} * z.z_{{ c.name }})) AS z_{{ c.name }}{{ "," if not loop.last }}
        {%- endfor %}
    FROM normalised AS z
    SEMI JOIN (SELECT DISTINCT run_id, layer, step FROM metric_above) AS a
        ON z.run_id = a.run_id AND z.layer = a.layer AND z.step = a.step
    GROUP BY z.run_id, z.layer, z.step
),

composite_indexed AS (
    SELECT c.*, l.jj, l.n
    FROM composite_z AS c
    JOIN layer_steps AS l ON c.run_id = l.run_id AND c.layer = l.layer AND c.step = l.step
),

composite_above AS (
    {{ above_threshold('composite_indexed', 'run_id, layer', 'jj', 'n') }}
),

composite_peaks AS (
    {{ local_maxima('composite_above', ['run_id', 'layer']) }}
),

composite_events AS (
    {{ merged('composite_peaks', ['run_id', 'layer']) }}
),

event_anchors AS (
    -- Every window to describe, as (run, layer, metric, index i, scale G): a metric event's
    -- own windows, and a composite event's at each metric of its layer with a capture at
    -- its step.
    SELECT e.run_id, e.layer AS event_layer, e.metric AS event_metric, e.step AS event_step,
           'change_point' AS event_type, e.layer, e.metric, e.i, e.scale
    FROM metric_events AS e
    UNION ALL
    SELECT e.run_id, e.layer, '__composite__', e.step, 'change_point_composite', x.layer, x.metric, x.j, e.scale
    FROM composite_events AS e
    JOIN indexed AS x ON x.run_id = e.run_id AND x.layer = e.layer AND x.step = e.step
),

window_members AS (
    -- the captures of each anchored series in [i - G, i + G), by an equi-join on the index
    SELECT a.*, v.j, v.step, v.x, v.x_prev
    FROM (SELECT *, unnest(range(i - scale, i + scale)) AS member FROM event_anchors) AS a
    JOIN indexed AS v ON v.run_id = a.run_id AND v.layer = a.layer AND v.metric = a.metric AND v.j = a.member
),

window_medians AS (
    -- only whole windows (2 G captures); x_prev is inside a window from its second capture on
    SELECT
        run_id, event_layer, event_metric, event_step, event_type, layer, metric, i, scale,
        min(step) AS start_step,
        max(step) AS end_step,
        median(x) FILTER (WHERE j < i) AS baseline_median,
        median(x) FILTER (WHERE j >= i) AS post_median,
        stddev_pop(x - x_prev) FILTER (WHERE j > i - scale AND j < i) AS volatility_baseline,
        stddev_pop(x - x_prev) FILTER (WHERE j > i) AS volatility_event
    FROM window_members
    GROUP BY ALL
    HAVING count(*) = 2 * scale
),

window_mads AS (
    SELECT w.run_id, w.event_layer, w.event_metric, w.event_step, w.event_type, w.layer, w.metric,
           median(abs(w.x - m.baseline_median)) AS baseline_mad
    FROM window_members AS w
    JOIN window_medians AS m USING (run_id, event_layer, event_metric, event_step, event_type, layer, metric)
    WHERE w.j < w.i
    GROUP BY ALL
),

window_stats AS (
    SELECT
        m.*,
        d.baseline_mad,
        m.post_median - m.baseline_median AS metric_size,
        m.volatility_event / greatest(m.volatility_baseline, 1e-12) AS volatility_ratio
    FROM window_medians AS m
    JOIN window_mads AS d USING (run_id, event_layer, event_metric, event_step, event_type, layer, metric)
),

running_volatility AS (
    -- at every capture and scale G, the volatility over the G - 1 first differences ending
    -- there: a window [i - G, i + G) has its baseline volatility at i - 1 and its event
    -- volatility at i + G - 1
    SELECT
        run_id, layer, metric, j,
        {%- for g in ns.scales %}
        stddev_pop(x - x_prev) OVER (by_j ROWS BETWEEN {{ g - 2 }} PRECEDING AND CURRENT ROW) AS volatility_{{ g }}{{ "," if not loop.last }}
        {%- endfor %}
    FROM indexed
    WINDOW by_j AS (PARTITION BY run_id, layer, metric ORDER BY j)
),

layer_windows AS (
    -- per metric event and layer with that metric: the volatility at both ends of the
    -- event's windows (a window that starts before the series has none)
    SELECT
        e.run_id, e.layer AS event_layer, e.metric AS event_metric, e.step AS event_step, v.layer,
        e.at > e.i AS after,
        CASE e.scale
            {%- for g in ns.scales %}
            WHEN {{ g }} THEN v.volatility_{{ g }}
            {%- endfor %}
        END AS volatility
    FROM (SELECT *, unnest([i - 1, i + scale - 1]) AS at FROM metric_events WHERE i >= scale) AS e
    JOIN running_volatility AS v ON v.run_id = e.run_id AND v.metric = e.metric AND v.j = e.at
),

layer_ratios AS (
    -- per metric event: the median volatility ratio over the layers' whole windows at its index
    SELECT run_id, event_layer, event_metric, event_step, median(volatility_ratio) AS volatility_ratio_agg
    FROM (
        SELECT
            run_id, event_layer, event_metric, event_step, layer,
            max(volatility) FILTER (WHERE after) / greatest(max(volatility) FILTER (WHERE NOT after), 1e-12)
                AS volatility_ratio
        FROM layer_windows
        GROUP BY ALL
        HAVING count(*) = 2
    )
    GROUP BY run_id, event_layer, event_metric, event_step
),

metric_diagnostics AS (
    -- an event's own windows, and the median volatility ratio over the layers at its index
    SELECT
        e.*,
        o.start_step, o.end_step,
        o.baseline_median, o.baseline_mad, o.metric_size, o.volatility_baseline, o.volatility_event, o.volatility_ratio,
        r.volatility_ratio_agg
    FROM metric_events AS e
    JOIN layer_ratios AS r
        ON r.run_id = e.run_id AND r.event_layer = e.layer AND r.event_metric = e.metric AND r.event_step = e.step
    JOIN window_stats AS o
        ON o.event_type = 'change_point' AND o.run_id = e.run_id AND o.event_layer = e.layer
        AND o.event_metric = e.metric AND o.event_step = e.step AND o.layer = e.layer
),

layer_metrics AS (
    -- every metric of every layer of the run (a layer without a value of it has no series)
    {%- for d in descriptors %}
    SELECT DISTINCT run_id, layer, module || '.{{ d }}' AS metric FROM captures
    {%- if not loop.last %}
    UNION ALL
    {%- endif %}
    {%- endfor %}
),

composite_metrics AS (
    -- every metric of the layer at a composite event: its |z| of the event's contrast at
    -- the step, and its own windows' diagnostics (NULL where it has no whole window)
    SELECT
        c.run_id, c.layer, c.step, lm.metric,
        abs(CASE
            {%- for k in contrasts %}
            WHEN c.kind = '{{ k.kind }}' AND c.scale = {{ k.g }} THEN z.z_{{ k.name }}
            {%- endfor %}
        END) AS metric_z,
        {%- for col in diagnostics if col != 'metric_z' %}
        s.{{ col }}{{ "," if not loop.last }}
        {%- endfor %}
    FROM composite_events AS c
    JOIN layer_metrics AS lm ON c.run_id = lm.run_id AND c.layer = lm.layer
    LEFT JOIN normalised AS z ON z.run_id = c.run_id AND z.layer = c.layer AND z.metric = lm.metric AND z.step = c.step
    LEFT JOIN window_stats AS s
        ON s.event_type = 'change_point_composite' AND s.run_id = c.run_id AND s.event_layer = c.layer
        AND s.event_step = c.step AND s.metric = lm.metric
),

composite_diagnostics AS (
    -- The median of the metrics' volatility ratios, and the JSON objects keyed by metric, in
    -- metric order. Each number is the FLOAT a single-metric column would hold, in its
    -- shortest text that reads back to it; null for NULL.
    SELECT
        run_id, layer, step,
        median(volatility_ratio) AS structure_ratio,
        {%- for col in diagnostics %}
        '{' || string_agg(
            CAST(to_json(metric) AS VARCHAR) || ':' || coalesce(CAST(CAST({{ col }} AS FLOAT) AS VARCHAR), 'null'), ','
            ORDER BY metric
        ) || '}' AS {{ diagnostic_json[col] }}{{ "," if not loop.last }}
        {%- endfor %}
    FROM composite_metrics
    GROUP BY run_id, layer, step
),

composite_bounds AS (
    -- the steps of a composite event's first and last window captures, in one equi-join
    -- (two lookups of the same steps invite a join of the steps with themselves)
    SELECT c.run_id, c.layer, c.step, min(l.step) AS start_step, max(l.step) AS end_step
    FROM (SELECT run_id, layer, step, unnest([i - scale, i + scale - 1]) AS jj FROM composite_events) AS c
    JOIN layer_steps AS l ON l.run_id = c.run_id AND l.layer = c.layer AND l.jj = c.jj
    GROUP BY c.run_id, c.layer, c.step
    HAVING count(*) = 2
),

all_events AS (
    SELECT
        e.run_id, e.layer, e.metric, 'change_point' AS event_type, e.i, e.scale, e.step,
        e.start_step, e.end_step,
        e.z AS magnitude,
        e.volatility_ratio AS structure_ratio,
        e.metric_size, e.z AS metric_z, e.baseline_median, e.baseline_mad,
        e.volatility_event, e.volatility_baseline, e.volatility_ratio, e.volatility_ratio_agg,
        {%- for col in diagnostics %}
        CAST(NULL AS VARCHAR) AS {{ diagnostic_json[col] }}{{ "," if not loop.last }}
        {%- endfor %}
    FROM metric_diagnostics AS e
    UNION ALL
    SELECT
        c.run_id, c.layer, '__composite__', 'change_point_composite', c.i, c.scale, c.step,
        b.start_step, b.end_step,
        c.z,
        j.structure_ratio,
        -- the single-metric diagnostics are NULL on a composite event
        {%- for col in diagnostics + ['volatility_ratio_agg'] %}
        NULL,
        {%- endfor %}
        {%- for col in diagnostics %}
        j.{{ diagnostic_json[col] }}{{ "," if not loop.last }}
        {%- endfor %}
    FROM composite_events AS c
    JOIN composite_diagnostics AS j ON c.run_id = j.run_id AND c.layer = j.layer AND c.step = j.step
    JOIN composite_bounds AS b ON b.run_id = c.run_id AND b.layer = c.layer AND b.step = c.step
),

layers_with_series AS (
    -- the layers with a series of each metric, and of the composite (a series of any metric)
    SELECT DISTINCT run_id, layer, metric FROM indexed
    UNION ALL
    SELECT DISTINCT run_id, layer, '__composite__' AS metric FROM indexed
),

other_layers AS (
    -- per run and metric: the number of layers with a series, less the event's own
    SELECT run_id, metric, count(*) - 1 AS n_other_layers
    FROM layers_with_series
    GROUP BY run_id, metric
),

nearby_layers AS (
    -- other layers with an event of the same metric whose index is within the tolerance
    -- (at least a quarter of this event's scale: a broad change is located less sharply)
    SELECT e.run_id, e.layer, e.metric, e.i, count(DISTINCT o.layer) AS n_nearby
    FROM all_events AS e
    JOIN all_events AS o
        ON e.run_id = o.run_id
        AND e.metric = o.metric
        AND o.layer <> e.layer
        AND abs(o.i - e.i) <= greatest({{ tolerance }}, e.scale // 4)
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
    CAST(metric_size AS FLOAT) AS metric_size,
    CAST(metric_z AS FLOAT) AS metric_z,
    CAST(baseline_median AS FLOAT) AS baseline_median,
    CAST(baseline_mad AS FLOAT) AS baseline_mad,
    CAST(volatility_event AS FLOAT) AS volatility_event,
    CAST(volatility_baseline AS FLOAT) AS volatility_baseline,
    CAST(volatility_ratio AS FLOAT) AS volatility_ratio,
    CAST(volatility_ratio_agg AS FLOAT) AS volatility_ratio_agg,
    metric_sizes_json,
    metric_z_json,
    baseline_median_json,
    baseline_mad_json,
    volatility_event_json,
    volatility_baseline_json,
    volatility_ratio_json
FROM scored_events
