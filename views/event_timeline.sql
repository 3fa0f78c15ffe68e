-- name: event_timeline
-- description: Change-point candidates of the current events_candidates analysis on a common
--   time axis: each peak's step normalised over its own series in the sample set the model
--   analysed (0 = first capture, 1 = last), beside the run's cohort, seed and mode.
-- column run_id: Run of the candidate.
-- column cohort_id: The run's cohort (runs.config_hash); NULL for a run without a runs row.
-- column seed: Run seed.
-- column run_mode: probe_micro_finetune, train_full or eval_only.
-- column family_id: Probe family of a probe run; NULL for a training run.
-- column layer: Layer of the candidate.
-- column metric: <module>.<descriptor>, or __composite__ for a layer's composite candidate.
-- column event_type: change_point or change_point_composite.
-- column step: Step of the peak (the first capture at the new level).
-- column start_step: First step of the window of candidate captures.
-- column end_step: Last step of the window of candidate captures.
-- column t: The peak's step normalised over its series, from 0 (first capture) to 1 (last).
-- column score: magnitude_eff * coherence * novelty.
-- column metric_z: Robust z of the change (single-metric candidates).
-- column analysis_id: The events_candidates analysis.
CREATE VIEW event_timeline AS
WITH candidates AS (
    SELECT
        *,
        -- a composite candidate spans the layer's modules, which share their steps
        CASE WHEN metric = '__composite__' THEN NULL ELSE split_part(metric, '.', 1) END AS module
    FROM events_candidates
),

analysed_sample_sets AS (
    -- the sample set events_candidates analysed in each run, as the model chooses it: its
    -- `sample_set` parameter when set, else the alphabetically first set with pooled rows,
    -- else (a run with per-sample rows only) the alphabetically first set
    SELECT
        run_id,
        coalesce(min(sample_set) FILTER (WHERE sample_id IS NULL), min(sample_set)) AS sample_set
    FROM geometry_state
    WHERE sample_set = coalesce((
        SELECT nullif(json_extract_string(params_json, '$.sample_set'), '')
        FROM warehouse_current_analyses
        WHERE model = 'events_candidates'
    ), sample_set)
    GROUP BY run_id
),

series_spans AS (
    -- each series' first and last step in the analysed sample set
    SELECT g.run_id, g.layer, g.module, min(g.step) AS first_step, max(g.step) AS last_step
    FROM geometry_state AS g
    JOIN analysed_sample_sets AS a ON g.run_id = a.run_id AND g.sample_set = a.sample_set
    GROUP BY g.run_id, g.layer, g.module
),

layer_spans AS (
    SELECT run_id, layer, min(first_step) AS first_step, max(last_step) AS last_step
    FROM series_spans
    GROUP BY run_id, layer
)

SELECT
    c.run_id,
    r.config_hash AS cohort_id,
    r.seed,
    r.run_mode,
    r.family_id,
    c.layer,
    c.metric,
    c.event_type,
    c.step,
    c.start_step,
    c.end_step,
    CASE
        WHEN coalesce(s.last_step, l.last_step) = coalesce(s.first_step, l.first_step) THEN 0.0
        ELSE (c.step - coalesce(s.first_step, l.first_step))::DOUBLE
            / (coalesce(s.last_step, l.last_step) - coalesce(s.first_step, l.first_step))
    END AS t,
    c.score,
    c.metric_z,
    c.analysis_id
FROM candidates AS c
LEFT JOIN runs AS r ON r.run_id = c.run_id
LEFT JOIN series_spans AS s ON s.run_id = c.run_id AND s.layer = c.layer AND s.module = c.module
LEFT JOIN layer_spans AS l ON l.run_id = c.run_id AND l.layer = c.layer
-- a NULL t (no pooled series) ties: the step, then the analysis, make the order total
ORDER BY r.config_hash, c.run_id, t, c.layer, c.metric, c.step, c.analysis_id
