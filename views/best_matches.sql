-- name: best_matches
-- description: Each signature's best partners (matches, match@1) of the current matches analysis (`warehouse_current_analyses`), with both runs' metadata side by side and whether the two runs share a cohort; one row per (signature a, partner b), ordered by a and rank.
-- column signature_id_a: The signature whose partners are ranked.
-- column kind: trajectory or probe: what the two signatures summarise.
-- column scope: run or layer: a whole run's signature, or one layer's.
-- column layer: The layer, for scope layer.
-- column rank_a: Rank of b among a's partners, 1 best.
-- column signature_id_b: The partner signature.
-- column score: 0.7 * (1 + cosine) / 2 + 0.3 * event F1 (the cosine term again when either side has no events); NULL with a NULL cosine.
-- column vector_cosine: Cosine similarity of the two signature vectors; NULL with a zero vector.
-- column event_f1: Harmonic mean of event precision and recall; NULL when either side has no events.
-- column event_precision: Share of a's events with an event of the same layer and metric in b within the tolerance.
-- column event_recall: Share of b's events with an event of the same layer and metric in a within the tolerance.
-- column mean_abs_offset_t: Mean |delta t| of a's matched events, each to its nearest qualifying event of b.
-- column same_cohort: Whether both runs are in the same cohort (same runs.config_hash); NULL when a run is not in runs.
-- column run_id_a: Run of signature a.
-- column cohort_id_a: Cohort of run a (runs.config_hash).
-- column seed_a: Seed of run a.
-- column run_mode_a: probe_micro_finetune, train_full or eval_only, for run a.
-- column family_id_a: Probe family of run a; NULL for a training run.
-- column probe_name_a: Probe of run a; NULL for a training run.
-- column run_id_b: Run of signature b.
-- column cohort_id_b: Cohort of run b (runs.config_hash).
-- column seed_b: Seed of run b.
-- column run_mode_b: probe_micro_finetune, train_full or eval_only, for run b.
-- column family_id_b: Probe family of run b; NULL for a training run.
-- column probe_name_b: Probe of run b; NULL for a training run.
-- column timewarp_tolerance: Largest |delta t| at which two events matched.
-- column match_id: Stable hash identifying the match.
-- column analysis_id: The matches analysis that produced the row.
CREATE VIEW best_matches AS
SELECT
    m.signature_id_a,
    sa.kind,
    sa.scope,
    sa.layer,
    m.rank_a,
    m.signature_id_b,
    m.score,
    m.vector_cosine,
    m.event_f1,
    m.event_precision,
    m.event_recall,
    m.mean_abs_offset_t,
    ra.config_hash = rb.config_hash AS same_cohort,
    m.run_id_a,
    ra.config_hash AS cohort_id_a,
    ra.seed AS seed_a,
    ra.run_mode AS run_mode_a,
    ra.family_id AS family_id_a,
    ra.probe_name AS probe_name_a,
    m.run_id_b,
    rb.config_hash AS cohort_id_b,
    rb.seed AS seed_b,
    rb.run_mode AS run_mode_b,
    rb.family_id AS family_id_b,
    rb.probe_name AS probe_name_b,
    m.timewarp_tolerance,
    m.match_id,
    m.analysis_id
FROM matches AS m
-- signature ids hash their analysis id, so the id alone finds the signature
LEFT JOIN signatures AS sa ON sa.signature_id = m.signature_id_a
LEFT JOIN runs AS ra ON ra.run_id = m.run_id_a
LEFT JOIN runs AS rb ON rb.run_id = m.run_id_b
ORDER BY m.analysis_id, m.signature_id_a, m.rank_a
