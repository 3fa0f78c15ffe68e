-- name: events
-- version: consensus@1.1
-- target: events
-- kind: merging (runs = events_candidates)
-- grain: cohort_id, layer, metric, event_id
-- param tolerance: float = 0.05 in [0, 1] | largest gap in normalised time t between neighbouring candidates of one cluster
-- param sample_set: str = '' | sample set whose series give t; empty: per run, the alphabetically first with pooled rows
-- description: Consensus events: the change-point candidates of a cohort (runs sharing
--   config_hash) clustered per layer and metric by their normalised time t; a cluster that
--   at least half of the cohort's runs support is an event, with its support, strength,
--   step and t statistics and the candidates and runs behind it. consensus@1.1: the
--   consensus@1 formula; new runs recompute only their cohorts' events.
{% import 'macros/series.sql' as series %}

-- Per (cohort, layer, metric) the candidates in t order: a running count of the gaps above
-- the tolerance numbers the clusters, then one aggregate per cluster. A cohort's events
-- depend on its own runs alone: merging new runs (`adding`) recomputes their cohorts and
-- keeps the other cohorts' events of the last build.
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

candidates AS (
    -- Both event types of the input analysis. A candidate of a run missing from `runs`
    -- has no cohort, and one without a pooled series has no t: neither can be placed, so
    -- both are left out (and count for nothing).
    SELECT
        c.event_id, c.run_id, r.cohort_id, c.layer, c.metric, c.step,
        {{ series.finite_or_null('c.score') }} AS score,
        {{ series.normalised_t('c.step', 's.first_step', 's.last_step') }} AS t
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

cluster_starts AS (
    -- A gap strictly above the tolerance starts a new cluster. t is a quotient of steps,
    -- so a gap that is exactly the tolerance on paper can land a rounding error above it
    -- (20/100 - 15/100 is 0.05000000000000002); 1e-12 of slack keeps such gaps inside, as a
    -- researcher reading the steps would, far below any real gap (1 step in 1e12).
    SELECT
        *,
        CASE WHEN t - lag(t) OVER in_t_order > {{ tolerance }}::DOUBLE + 1e-12 THEN 1 ELSE 0 END AS starts_cluster
    FROM candidates
    WINDOW in_t_order AS (PARTITION BY cohort_id, layer, metric ORDER BY t, run_id, step, event_id)
),

clustered AS (
    SELECT
        *,
        sum(starts_cluster) OVER (
            PARTITION BY cohort_id, layer, metric
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
    GROUP BY cohort_id, layer, metric, cluster_no
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
