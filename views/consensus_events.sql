-- name: consensus_events
-- description: Consensus events (the events model) of the current events analysis (`warehouse_current_analyses`), one row per event with its cohort's shared configuration, ordered by cohort and normalised time.
-- column cohort_id: The cohort: runs.config_hash shared by its runs.
-- column cohort_config_json: The configuration the cohort's runs share: config_json of its first run (by run_id) without the top-level seed.
-- column n_runs_total: Runs in the cohort (every run with that config_hash).
-- column t_median: Median normalised time (0 = first capture, 1 = last) of the event's candidates.
-- column step_median: Median peak step of the event's candidates (rounded half away from zero).
-- column step_min: Smallest peak step of the event's candidates.
-- column step_max: Largest peak step of the event's candidates.
-- column layer: Transformer layer index.
-- column metric: Metric the event was found on, <module>.<descriptor> or __composite__.
-- column n_runs_supporting: Distinct runs with a candidate in the event.
-- column support: n_runs_supporting / n_runs_total.
-- column strength: Mean score of the event's candidates.
-- column source_run_ids: The supporting runs, alphabetically.
-- column source_event_ids: events_candidates.event_id of every candidate in the event, in time order.
-- column event_id: Stable hash identifying the event.
-- column analysis_id: The analysis of events that produced the row.
CREATE VIEW consensus_events AS
WITH cohort_configs AS (
    -- runs of a cohort differ only by their seed: drop it (a JSON merge patch with null
    -- removes the key) to show what they share; text that is not a JSON object is shown as is
    SELECT
        config_hash AS cohort_id,
        CASE
            WHEN json_valid(config_json) AND json_type(config_json) = 'OBJECT'
            THEN CAST(json_merge_patch(config_json, '{"seed": null}') AS VARCHAR)
            ELSE config_json
        END AS cohort_config_json
    FROM (SELECT config_hash, arg_min(config_json, run_id) AS config_json FROM runs GROUP BY config_hash)
)
SELECT
    e.cohort_id,
    c.cohort_config_json,
    e.n_runs_total,
    e.t_median,
    e.step_median,
    e.step_min,
    e.step_max,
    e.layer,
    e.metric,
    e.n_runs_supporting,
    e.support,
    e.strength,
    e.source_run_ids,
    e.source_event_ids,
    e.event_id,
    e.analysis_id
FROM events AS e
LEFT JOIN cohort_configs AS c ON e.cohort_id = c.cohort_id
ORDER BY e.cohort_id, e.t_median, e.layer, e.metric, e.event_id
