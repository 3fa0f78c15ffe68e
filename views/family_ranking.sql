-- name: family_ranking
-- description: Probe families ranked by dis@1 within each probe_summaries analysis and probe: the mean DIS over a family's seeds, rank 1 highest; families without a DIS (a single seed) rank last, ties by family_id.
-- column analysis_id: The probe_summaries analysis the ranking is computed from.
-- column probe_name: The probe the families were run with.
-- column family_id: The probe family.
-- column family_rank: Rank of the family within (analysis_id, probe_name): 1 has the highest mean DIS; NULL means last; ties by family_id.
-- column mean_dis: Mean of the family's non-NULL DIS over its seeds; NULL when none has a DIS.
-- column n_seeds: Runs (seeds) of the family in the analysis.
-- column seeds: The seeds of those runs, ascending.
-- column seed_dis: The DIS of each run, aligned with seeds (NULL where a run has none).
CREATE VIEW family_ranking AS
WITH family_dis AS (
    -- NaN (from a producer other than the model) counts as no DIS
    SELECT
        analysis_id, probe_name, family_id,
        avg(CASE WHEN isfinite("DIS") THEN "DIS" END) AS mean_dis,
        count(*) AS n_seeds,
        list(seed ORDER BY seed, run_id) AS seeds,
        list("DIS" ORDER BY seed, run_id) AS seed_dis
    FROM probe_summaries
    GROUP BY analysis_id, probe_name, family_id
)
SELECT
    analysis_id,
    probe_name,
    family_id,
    row_number() OVER (PARTITION BY analysis_id, probe_name ORDER BY mean_dis DESC NULLS LAST, family_id) AS family_rank,
    mean_dis,
    n_seeds,
    seeds,
    seed_dis
FROM family_dis
ORDER BY analysis_id, probe_name, family_rank
