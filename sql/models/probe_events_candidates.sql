-- name: probe_events_candidates
-- version: probe_cpd@1
-- target: probe_events_candidates
-- kind: per_run
-- runs: family_id IS NOT NULL AND probe_name IS NOT NULL
-- grain: run_id, event_id
-- param tolerance_captures: int = 2 in [0, 1000] | captures, in units of the run's median step spacing, within which change points are one event
-- description: Layer C event candidates of the probe runs (probe_cpd@1): a probe run's
--   single-metric change points (events_candidates rows of event_type change_point) over
--   all its layers and metrics, in step order, grouped by gaps: a gap of more than
--   timewarp_tolerance_steps (tolerance_captures times the median gap between the run's
--   consecutive captured steps, rounded to a whole step) starts a new event. Members are
--   weighed by magnitude_eff (robust z damped by a rise of volatility), not by score,
--   whose coherence factor is 0 for a change in one layer only, a probe's usual
--   specialisation. An event is reported at the step of its largest member (earliest on
--   ties); its strength is the sum over its layers of each layer's largest member: the
--   metrics of one layer are views of one representation and count once, distinct layers
--   add up. supporting_key names each member series once as L<layer>:<metric>, in (layer,
--   metric) order; supporting_val gives its largest magnitude_eff in the event. Composite
--   candidates are left out: they restate the changes of a layer's metrics.
--   detector_version is the version of the model that wrote the events_candidates
--   analysis read.

-- Per run: the capture spacing gives the tolerance; the change points in step order,
-- tagged where a gap exceeds it, are numbered into events by a running count; then one
-- aggregate per event. Each run reads only its own rows, so runs are built one by one.
WITH probe_runs AS (
    -- probe_events_candidates.probe_config_hash is not nullable: a run without a hash is
    -- written with '' (empty string), as probe_summaries writes it
    SELECT run_id, family_id, seed, probe_name, coalesce(probe_config_hash, '') AS probe_config_hash
    FROM runs
    WHERE family_id IS NOT NULL AND probe_name IS NOT NULL
),

capture_steps AS (
    -- the steps at which the run captured geometry, whatever the layer, module or sample set
    SELECT DISTINCT run_id, step
    FROM geometry_state
    WHERE run_id IN (SELECT run_id FROM probe_runs)
),

capture_gaps AS (
    SELECT run_id, step - lag(step) OVER (PARTITION BY run_id ORDER BY step) AS gap
    FROM capture_steps
),

run_tolerances AS (
    -- tolerance_captures times the median gap (the mean of the middle two of an even
    -- count), rounded half away from zero: a whole number of steps, compared exactly
    SELECT run_id, round({{ tolerance_captures }} * median(gap)) AS tolerance_steps
    FROM capture_gaps
    WHERE gap IS NOT NULL
    GROUP BY run_id
),

members AS (
    -- The single-metric change points of the probe runs. One without a finite
    -- magnitude_eff cannot be ranked or weighed, so it is left out. A run with fewer than
    -- two captured steps has no spacing: tolerance 0, only change points at one step join.
    SELECT
        c.run_id, c.analysis_id, c.layer, c.metric, c.step, c.magnitude_eff,
        coalesce(t.tolerance_steps, 0) AS tolerance_steps
    FROM events_candidates AS c
    JOIN probe_runs AS r ON c.run_id = r.run_id
    LEFT JOIN run_tolerances AS t ON c.run_id = t.run_id
    WHERE c.event_type = 'change_point' AND isfinite(c.magnitude_eff)
),

event_starts AS (
    -- in step order (layer and metric order the change points of one step), a gap
    -- strictly above the tolerance starts a new event; the run's first has no gap
    SELECT
        *,
        CASE WHEN step - lag(step) OVER in_step_order > tolerance_steps THEN 1 ELSE 0 END AS starts_event
    FROM members
    WINDOW in_step_order AS (PARTITION BY run_id ORDER BY step, layer, metric)
),

numbered AS (
    -- each member's event: the number of events started up to it
    SELECT
        *,
        sum(starts_event) OVER (
            PARTITION BY run_id ORDER BY step, layer, metric ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
        ) AS event_no
    FROM event_starts
),

ranked AS (
    -- each member's rank within its event: 1 is the largest, the earliest of equal ones
    SELECT
        *,
        row_number() OVER (PARTITION BY run_id, event_no ORDER BY magnitude_eff DESC, step, layer, metric) AS size_rank
    FROM numbered
),

event_series AS (
    -- each series (layer, metric) of an event once, with its largest magnitude_eff there
    -- (a series can fire twice within the tolerance)
    SELECT run_id, event_no, layer, metric, max(magnitude_eff) AS magnitude_eff
    FROM ranked
    GROUP BY run_id, event_no, layer, metric
),

event_layers AS (
    SELECT run_id, event_no, layer, max(magnitude_eff) AS magnitude_eff
    FROM event_series
    GROUP BY run_id, event_no, layer
),

event_support AS (
    SELECT
        run_id, event_no,
        list('L' || layer || ':' || metric ORDER BY layer, metric) AS supporting_key,
        list(magnitude_eff ORDER BY layer, metric) AS supporting_val
    FROM event_series
    GROUP BY run_id, event_no
),

event_strengths AS (
    -- the layers ascending, and the sum of their largest members
    SELECT run_id, event_no, list(layer ORDER BY layer) AS layers, sum(magnitude_eff) AS strength
    FROM event_layers
    GROUP BY run_id, event_no
),

events AS (
    SELECT
        run_id, event_no,
        any_value(analysis_id) AS source_analysis,
        any_value(step) FILTER (WHERE size_rank = 1) AS t_step,
        any_value(tolerance_steps) AS tolerance_steps
    FROM ranked
    GROUP BY run_id, event_no
)

SELECT
    e.run_id,
    r.family_id,
    r.seed::INTEGER AS seed,
    r.probe_name,
    r.probe_config_hash,
    -- from the input analysis's record; an analysis written outside the engine has none
    -- and is named by its id
    coalesce(getvariable('input_versions')['events_candidates'], e.source_analysis) AS detector_version,
    substr(sha256(concat_ws('|', e.run_id, getvariable('analysis_id'), e.t_step, 'change_point')), 1, 32) AS event_id,
    'change_point' AS event_type,
    e.t_step::BIGINT AS t_step,
    g.layers::SMALLINT[] AS layers,
    g.strength::FLOAT AS strength,
    s.supporting_key::VARCHAR[] AS supporting_key,
    s.supporting_val::FLOAT[] AS supporting_val,
    e.tolerance_steps::INTEGER AS timewarp_tolerance_steps
FROM events AS e
JOIN event_support AS s ON e.run_id = s.run_id AND e.event_no = s.event_no
JOIN event_strengths AS g ON e.run_id = g.run_id AND e.event_no = g.event_no
JOIN probe_runs AS r ON e.run_id = r.run_id
