-- name: probe_events
-- description: Layer C events of the probe runs (the current probe_events_candidates analysis), one row per event, beside the run's probe, family and seed: when the probe's geometry changed, in which layers, how strongly and through which series; rank_in_run 1 is the run's strongest event.
-- column probe_name: The probe the run fine-tuned with.
-- column probe_config_hash: Hash of the probe's configuration ('' when the run has none): runs sharing it and probe_name form one population.
-- column family_id: The probe family of the run.
-- column family_source: Where the family comes from (families.source); NULL when the family is not registered.
-- column family_tags: The family's tags (families.tags); NULL when the family is not registered.
-- column run_id: The probe run.
-- column seed: Run seed.
-- column base_checkpoint: The checkpoint the probe fine-tuned from.
-- column event_step: Step of the event: that of its largest change point.
-- column t: event_step normalised over the run's captures, from 0 (first captured step) to 1 (last).
-- column layers: Layers with a change point in the event, ascending.
-- column n_layers: Number of those layers.
-- column strength: Sum over the layers of each layer's largest magnitude_eff (robust z of the change, damped by a rise of volatility).
-- column rank_in_run: Rank of the event within its run by strength: 1 is the strongest; ties by step.
-- column supporting_series: Each series with a change point in the event, as L<layer>:<module>.<descriptor>, in (layer, metric) order.
-- column supporting_values: Largest magnitude_eff of each series in the event, aligned with supporting_series.
-- column tolerance_steps: Gap in steps up to which change points were joined into one event for this run.
-- column detector_version: Version of the change-point detector (the events_candidates model) the events come from.
-- column event_id: Stable ID of the event.
-- column analysis_id: The probe_events_candidates analysis.
CREATE VIEW probe_events AS
WITH capture_spans AS (
    SELECT run_id, min(step) AS first_step, max(step) AS last_step
    FROM geometry_state
    GROUP BY run_id
)

SELECT
    e.probe_name,
    e.probe_config_hash,
    e.family_id,
    f.source AS family_source,
    f.tags AS family_tags,
    e.run_id,
    e.seed,
    r.base_checkpoint,
    e.t_step AS event_step,
    CASE
        WHEN s.last_step = s.first_step THEN 0.0
        ELSE (e.t_step - s.first_step)::DOUBLE / (s.last_step - s.first_step)
    END AS t,
    e.layers,
    len(e.layers) AS n_layers,
    e.strength,
    row_number() OVER (PARTITION BY e.analysis_id, e.run_id ORDER BY e.strength DESC, e.t_step) AS rank_in_run,
    e.supporting_key AS supporting_series,
    e.supporting_val AS supporting_values,
    e.timewarp_tolerance_steps AS tolerance_steps,
    e.detector_version,
    e.event_id,
    e.analysis_id
FROM probe_events_candidates AS e
LEFT JOIN families AS f ON f.family_id = e.family_id
LEFT JOIN runs AS r ON r.run_id = e.run_id
LEFT JOIN capture_spans AS s ON s.run_id = e.run_id
ORDER BY e.probe_name, e.probe_config_hash, e.family_id, e.seed, e.run_id, e.t_step, e.analysis_id
