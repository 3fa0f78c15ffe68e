-- name: events
-- version: consensus@2
-- target: events
-- kind: merging (runs = events_candidates, groups = runs(config_hash))
-- grain: cohort_id, layer, metric, event_id
-- param min_tolerance: float = 0.05 in [0, 1] | smallest gap tolerance in normalised time t: gaps up to it never split an event
-- param max_tolerance: float = 0.25 in [0, 1] | largest gap tolerance in t, however far the seeds spread (at or below min_tolerance: a fixed tolerance)
-- param sample_set: str = '' | sample set whose series give t; empty: per run, the alphabetically first with pooled rows
-- description: Consensus events (consensus@2): the change-point candidates of a cohort
--   (runs sharing config_hash) grouped by layer, metric and direction of change (the sign
--   of metric_size), aligned across the seeds in time order and clustered by gaps in
--   normalised time t with a tolerance that follows how far the seeds' timing spreads:
--   the widest range of t among the runs' k-th candidates (k = 1, 2, ...), at most
--   max_tolerance and half the smallest spacing of a run's own successive candidates, at
--   least min_tolerance. A cluster that at least half of the cohort's runs support is an
--   event, with its support, strength, step and t statistics and the candidates and runs
--   behind it. New runs recompute only their cohorts' events.
{% import 'macros/series.sql' as series %}

-- Per (cohort, layer, metric, direction) the candidates in t order: the group's tolerance
-- comes from its own candidates (ranked per run), a running count of the gaps above it
-- numbers the clusters, then one aggregate per cluster. A cohort's events depend on its own
-- runs alone: merging new runs (`adding`) recomputes their cohorts and keeps the other
-- cohorts' events of the last build.
{% set cohort_runs = 'changed_cohort_runs' if adding else none %}
WITH run_cohorts AS MATERIALIZED (
    -- runs is read once: each run's cohort (its config_hash)
    SELECT run_id, config_hash AS cohort_id
    FROM runs
),
{%- if adding %}

changed_cohorts AS (
    SELECT DISTINCT cohort_id
    FROM run_cohorts
    WHERE run_id IN (SELECT run_id FROM added_runs)
),

changed_cohort_runs AS (
    SELECT run_id
    FROM run_cohorts
    WHERE cohort_id IN (SELECT cohort_id FROM changed_cohorts)
),
{%- endif %}

cohorts AS (
    -- the cohort's size counts every run with its config_hash, with or without candidates
    SELECT cohort_id, count(DISTINCT run_id) AS n_runs_total
    FROM run_cohorts
    GROUP BY cohort_id
),

pooled_spans AS MATERIALIZED (
    -- geometry_state is read once: the first and last step of every pooled series
    {{ series.series_spans(cohort_runs) }}
),

analysed_sets AS (
    -- the sample set each run is analysed on, chosen as cpd@1 chooses it: the parameter's,
    -- else the alphabetically first with pooled rows
    SELECT run_id, min(sample_set) AS sample_set
    FROM pooled_spans
    WHERE {{ sample_set }} = '' OR sample_set = {{ sample_set }}
    GROUP BY run_id
),

analysed_series AS (
    -- the pooled series of every run on its analysed sample set: the one cpd@1 searched
    SELECT spans.run_id, spans.layer, spans.module, spans.first_step, spans.last_step
    FROM pooled_spans AS spans
    JOIN analysed_sets
        ON spans.run_id = analysed_sets.run_id
        AND spans.sample_set = analysed_sets.sample_set
),

metric_spans AS (
    -- the span a candidate's t is measured on, keyed by what its metric names: the module
    -- before the dot, or for `__composite__` the whole layer (its modules share steps, so
    -- the smallest first and largest last step are any module's)
    SELECT run_id, layer, module AS metric_module, first_step, last_step
    FROM analysed_series
    UNION ALL
    SELECT run_id, layer, '__composite__' AS metric_module, min(first_step) AS first_step, max(last_step) AS last_step
    FROM analysed_series
    GROUP BY run_id, layer
),

candidates AS MATERIALIZED (
    -- Both event types of the input analysis, with their direction of change, read once
    -- (the tolerances and the clusters both need them). A candidate of a run missing from
    -- `runs` has no cohort, and one without a pooled series has no t: neither can be
    -- placed, so both are left out (and count for nothing).
    SELECT
        c.event_id, c.run_id, r.cohort_id, c.layer, c.metric, c.step,
        {{ series.finite_or_null('c.score') }} AS score,
        {{ series.normalised_t('c.step', 's.first_step', 's.last_step') }} AS t,
        -- +1 up, -1 down; 0 when metric_size is NULL, NaN or 0 (cpd@1's composite events:
        -- their z is a root mean square, without a sign), a group of its own
        coalesce(sign({{ series.finite_or_null('c.metric_size') }}), 0) AS direction
    FROM events_candidates AS c
    JOIN run_cohorts AS r
        ON c.run_id = r.run_id
    JOIN metric_spans AS s
        ON c.run_id = s.run_id
        AND c.layer = s.layer
        AND s.metric_module = CASE WHEN c.metric = '__composite__' THEN c.metric ELSE split_part(c.metric, '.', 1) END
    {%- if adding %}
    WHERE c.run_id IN (SELECT run_id FROM changed_cohort_runs)
    {%- endif %}
),

ranked AS (
    -- each run's candidates of a group in t order: the run's k-th, and the t since its
    -- previous one (the spacing of the run's own successive changes)
    SELECT
        *,
        row_number() OVER in_run AS k,
        t - lag(t) OVER in_run AS run_spacing
    FROM candidates
    WINDOW in_run AS (PARTITION BY cohort_id, layer, metric, direction, run_id ORDER BY t, step, event_id)
),

rank_spreads AS (
    -- how far the seeds' timing spreads: the range of t of the k-th candidates of the runs
    -- that have one, for each k reached by at least two runs (one run shows no spread)
    SELECT cohort_id, layer, metric, direction, max(t) - min(t) AS spread
    FROM ranked
    GROUP BY cohort_id, layer, metric, direction, k
    HAVING count(*) >= 2
),

group_spreads AS (
    SELECT cohort_id, layer, metric, direction, max(spread) AS spread
    FROM rank_spreads
    GROUP BY cohort_id, layer, metric, direction
),

group_spacings AS (
    -- two candidates of one run are two changes: half their smallest spacing bounds the
    -- tolerance, so a run's successive changes stay apart (a typical spacing would let a
    -- run that fires often chain its own changes, and the other runs', into one cluster)
    SELECT cohort_id, layer, metric, direction, min(run_spacing) / 2 AS half_spacing
    FROM ranked
    WHERE run_spacing IS NOT NULL
    GROUP BY cohort_id, layer, metric, direction
),

group_tolerances AS (
    -- the widest spread, at most max_tolerance and half the spacing, at least min_tolerance
    -- (which wins where the bounds cross); a group of one run has no spread: min_tolerance
    SELECT
        g.cohort_id, g.layer, g.metric, g.direction,
        greatest(
            {{ min_tolerance }}::DOUBLE,
            least(coalesce(s.spread, 0.0), {{ max_tolerance }}::DOUBLE, coalesce(h.half_spacing, {{ max_tolerance }}::DOUBLE))
        ) AS tolerance
    FROM (SELECT DISTINCT cohort_id, layer, metric, direction FROM candidates) AS g
    LEFT JOIN group_spreads AS s USING (cohort_id, layer, metric, direction)
    LEFT JOIN group_spacings AS h USING (cohort_id, layer, metric, direction)
),

cluster_starts AS (
    -- A gap strictly above the group's tolerance starts a new cluster. t is a quotient of
    -- steps, so a gap that is exactly the tolerance on paper can land a rounding error above
    -- it (20/100 - 15/100 is 0.05000000000000002); 1e-12 of slack keeps such gaps inside, as
    -- a researcher reading the steps would, far below any real gap (1 step in 1e12).
    SELECT
        c.*,
        CASE WHEN c.t - lag(c.t) OVER in_t_order > g.tolerance + 1e-12 THEN 1 ELSE 0 END AS starts_cluster
    FROM candidates AS c
    JOIN group_tolerances AS g USING (cohort_id, layer, metric, direction)
    WINDOW in_t_order AS (PARTITION BY c.cohort_id, c.layer, c.metric, c.direction ORDER BY c.t, c.run_id, c.step, c.event_id)
),

clustered AS (
    SELECT
        *,
        sum(starts_cluster) OVER (
            PARTITION BY cohort_id, layer, metric, direction
            ORDER BY t, run_id, step, event_id
            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
        ) AS cluster_no
    FROM cluster_starts
),

clusters AS (
    -- A run counts once for support; every candidate counts for the strength and the
    -- step and t statistics. Lists are deterministic: the source events in the cluster's
    -- order (t, run_id, step, event_id), so the first one opens the cluster; the
    -- supporting runs once each, alphabetically.
    SELECT
        cohort_id, layer, metric,
        count(DISTINCT run_id) AS n_runs_supporting,
        avg(score) AS strength,
        -- median of an even count: the mean of the two middle steps, rounded half away
        -- from zero (round() on DOUBLE); exact for steps below 2^52
        round(median(step)) AS step_median,
        min(step) AS step_min,
        max(step) AS step_max,
        median(t) AS t_median,
        list(event_id ORDER BY t, run_id, step, event_id) AS source_event_ids,
        list(DISTINCT run_id ORDER BY run_id) AS source_run_ids
    FROM clustered
    GROUP BY cohort_id, layer, metric, direction, cluster_no
)

SELECT
    substr(sha256(concat_ws('|',
        getvariable('analysis_id'), c.cohort_id, c.layer, c.metric, c.source_event_ids[1]
    )), 1, 32) AS event_id,
    c.cohort_id,
    c.layer::SMALLINT AS layer,
    c.metric,
    'consensus' AS event_type,
    c.step_median::BIGINT AS step_median,
    c.step_min::BIGINT AS step_min,
    c.step_max::BIGINT AS step_max,
    c.t_median::FLOAT AS t_median,
    c.n_runs_supporting::INTEGER AS n_runs_supporting,
    k.n_runs_total::INTEGER AS n_runs_total,
    (c.n_runs_supporting / k.n_runs_total)::FLOAT AS support,
    c.strength::FLOAT AS strength,
    c.source_event_ids::VARCHAR[] AS source_event_ids,
    c.source_run_ids::VARCHAR[] AS source_run_ids
FROM clusters AS c
JOIN cohorts AS k
    ON c.cohort_id = k.cohort_id
-- supported by at least half of the cohort's runs
WHERE 2 * c.n_runs_supporting >= k.n_runs_total
{%- if adding %}
UNION ALL
SELECT
    event_id, cohort_id, layer, metric, event_type, step_median, step_min, step_max, t_median,
    n_runs_supporting, n_runs_total, support, strength, source_event_ids, source_run_ids
FROM previous_output
WHERE cohort_id NOT IN (SELECT cohort_id FROM changed_cohorts)
{%- endif %}
