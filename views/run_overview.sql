-- name: run_overview
-- description: One row per run (every run in runs, and every run with geometry even
--   without a runs row): its cohort, seed and mode, how far it trained, how many geometry
--   captures it has and how many change-point candidates the current events_candidates
--   analysis found in it.
-- column run_id: Stable ID of the run.
-- column cohort_id: The run's cohort: runs.config_hash, shared by runs that differ only by seed.
-- column seed: Run seed.
-- column run_mode: probe_micro_finetune, train_full or eval_only.
-- column family_id: Probe family of a probe run; NULL for a training run.
-- column probe_name: Probe of a probe run; NULL for a training run.
-- column status: running, completed, failed or interrupted; NULL for a run with geometry but no runs row.
-- column captures: Distinct steps with pooled geometry captures.
-- column last_step: Last step with a checkpoint or a geometry capture.
-- column event_count: Change-point candidates (single-metric and composite) of the current analysis.
CREATE VIEW run_overview AS
WITH capture_steps AS (
    SELECT run_id, count(DISTINCT step) AS captures, max(step) AS last_capture
    FROM geometry_state
    WHERE sample_id IS NULL
    GROUP BY run_id
),

checkpoint_steps AS (
    SELECT run_id, max(step) AS last_checkpoint
    FROM checkpoints
    GROUP BY run_id
),

event_counts AS (
    SELECT run_id, count(*) AS event_count
    FROM events_candidates
    GROUP BY run_id
),

all_runs AS (
    -- a run captured without a runs row still shows, with NULL metadata
    SELECT run_id FROM runs
    UNION
    SELECT run_id FROM capture_steps
)

SELECT
    a.run_id,
    r.config_hash AS cohort_id,
    r.seed,
    r.run_mode,
    r.family_id,
    r.probe_name,
    r.status,
    coalesce(c.captures, 0) AS captures,
    greatest(c.last_capture, k.last_checkpoint) AS last_step,
    coalesce(e.event_count, 0) AS event_count
FROM all_runs AS a
LEFT JOIN runs AS r ON r.run_id = a.run_id
LEFT JOIN capture_steps AS c ON c.run_id = a.run_id
LEFT JOIN checkpoint_steps AS k ON k.run_id = a.run_id
LEFT JOIN event_counts AS e ON e.run_id = a.run_id
ORDER BY r.config_hash, r.seed, a.run_id
