-- name: probe_summaries
-- version: probe_summary@2.1
-- target: probe_summaries
-- kind: table_by_run
-- runs: family_id IS NOT NULL AND probe_name IS NOT NULL
-- grain: run_id, family_id, seed, probe_name, probe_config_hash
-- param module: str = 'resid_post' in {resid_pre, attn_out, mlp_out, resid_post, logits} | module whose pooled series are summarised
-- param sample_set: str = '' | sample set analysed; empty: per run the alphabetically first with pooled rows
-- description: One row per probe run (a run with a family_id and a probe_name): Layer A
--   descriptors at the run's first and last pooled capture of the module and Layer B
--   dynamics per layer (probe_summary@2.0), then the dis@1 ranking across the runs of each
--   probe population: the robust-standardised signature (sig@1), its magnitude, its
--   coherence across the family's seeds, its novelty against the other families, and DIS.
--   probe_summary@2.1: the 2.0 formulas, reading only the probe runs' files.
{% import 'macros/series.sql' as series %}
{% set a_descriptors = ['eff_rank', 'sv_entropy', 'sparsity'] %}
{#- dis_features (a global, from the contracts): the dis@1 features of one layer, in the
    order the signature lists them. #}

-- Full, not per run: the dis@1 standardisation, coherence and novelty compare each run with
-- the other runs of its population, so a new run changes the others' rows.
WITH probe_runs AS (
    -- The runs summarised: those with a family and a probe. probe_summaries.probe_config_hash
    -- is not nullable, so a run without a hash is written with '' (empty string); the same
    -- value is its population key, so the runs without a hash form one population.
    SELECT
        run_id, family_id, seed, probe_name,
        coalesce(probe_config_hash, '') AS probe_config_hash,
        model_id, base_checkpoint, run_mode
    FROM runs
    WHERE family_id IS NOT NULL AND probe_name IS NOT NULL
),

analysed AS (
    {{ series.analysed_sample_sets(sample_set) }}
),

run_spans AS (
    -- pre and post: the run's first and last pooled step of the module, one pair for all
    -- layers (a layer without a capture at pre or post gets NULL there)
    SELECT s.run_id, s.sample_set, min(s.first_step) AS pre_step, max(s.last_step) AS post_step
    FROM ({{ series.series_spans() }}) AS s
    JOIN analysed AS a ON s.run_id = a.run_id AND s.sample_set = a.sample_set
    WHERE s.module = {{ module }} AND s.run_id IN (SELECT run_id FROM probe_runs)
    GROUP BY s.run_id, s.sample_set
),

pooled_state AS (
    -- the pooled captures of the module in the run's analysed sample set; NaN as NULL
    SELECT
        g.run_id, g.step, g.layer, sp.pre_step, sp.post_step,
        {%- for d in a_descriptors + ['principal_angle_init'] %}
        {{ series.finite_or_null('g.' ~ d) }} AS {{ d }}{{ "," if not loop.last }}
        {%- endfor %}
    FROM geometry_state AS g
    JOIN run_spans AS sp ON g.run_id = sp.run_id AND g.sample_set = sp.sample_set
    WHERE g.sample_id IS NULL AND g.module = {{ module }}
),

layer_state AS (
    -- Layer A per covered layer: the values at pre and post (one pooled row per step)
    SELECT
        run_id, layer,
        {%- for d in a_descriptors %}
        any_value({{ d }}) FILTER (WHERE step = pre_step) AS {{ d }}_pre,
        any_value({{ d }}) FILTER (WHERE step = post_step) AS {{ d }}_post,
        {%- endfor %}
        -- the angle between the post subspace and the first capture's
        any_value(principal_angle_init) FILTER (WHERE step = post_step) AS principal_angle_post_vs_pre
    FROM pooled_state
    GROUP BY run_id, layer
),

layer_dynamics AS (
    -- Layer B per layer over the run's pooled captures of the module (aggregates skip the
    -- NULLs of the first captures)
    SELECT
        d.run_id, d.layer,
        avg({{ series.finite_or_null('d.drift_velocity') }}) AS drift_velocity,
        avg(abs({{ series.finite_or_null('d.drift_accel') }})) AS drift_accel,
        stddev_samp({{ series.finite_or_null('d.drift_velocity') }}) AS volatility,
        avg({{ series.finite_or_null('d.alignment_velocity') }}) AS alignment_velocity
    FROM geometry_dynamics AS d
    JOIN run_spans AS sp ON d.run_id = sp.run_id AND d.sample_set = sp.sample_set
    WHERE d.sample_id IS NULL AND d.module = {{ module }}
    GROUP BY d.run_id, d.layer
),

per_layer AS (
    -- one row per (run, covered layer) with every per-layer value as it is stored (FLOAT):
    -- the signature standardises the stored values
    SELECT
        s.run_id, s.layer,
        {%- for d in a_descriptors %}
        s.{{ d }}_pre AS A_{{ d }}_pre,
        s.{{ d }}_post AS A_{{ d }}_post,
        (s.{{ d }}_post::DOUBLE - s.{{ d }}_pre::DOUBLE)::FLOAT AS A_{{ d }}_delta,
        {%- endfor %}
        s.principal_angle_post_vs_pre AS A_principal_angle_post_vs_pre,
        dyn.drift_velocity::FLOAT AS B_drift_velocity_by_layer,
        dyn.drift_accel::FLOAT AS B_drift_accel_by_layer,
        dyn.volatility::FLOAT AS B_volatility_by_layer,
        dyn.alignment_velocity::FLOAT AS B_alignment_velocity_by_layer
    FROM layer_state AS s
    LEFT JOIN layer_dynamics AS dyn ON s.run_id = dyn.run_id AND s.layer = dyn.layer
),

run_layers AS (
    -- the per-layer arrays, aligned with layers_covered (ascending), and the global means of
    -- their non-NULL values
    SELECT
        run_id,
        list(layer ORDER BY layer) AS layers_covered,
        {%- for d in a_descriptors %}
        {%- for part in ['pre', 'post', 'delta'] %}
        list(A_{{ d }}_{{ part }} ORDER BY layer) AS A_{{ d }}_{{ part }},
        {%- endfor %}
        {%- endfor %}
        list(A_principal_angle_post_vs_pre ORDER BY layer) AS A_principal_angle_post_vs_pre,
        {%- for b in ['drift_velocity', 'drift_accel', 'volatility', 'alignment_velocity'] %}
        list(B_{{ b }}_by_layer ORDER BY layer) AS B_{{ b }}_by_layer,
        avg(B_{{ b }}_by_layer::DOUBLE) AS B_{{ b }}_global{{ "," if not loop.last }}
        {%- endfor %}
    FROM per_layer
    GROUP BY run_id
),

run_captures AS (
    -- the distinct pooled steps of the module the summary used, over all layers
    SELECT run_id, list(DISTINCT step ORDER BY step) AS capture_steps_used
    FROM pooled_state
    GROUP BY run_id
),

affected AS (
    -- layers with at least one event candidate of the run (any metric, composite included)
    SELECT run_id, list(DISTINCT layer ORDER BY layer) AS affected_layers
    FROM events_candidates
    WHERE run_id IN (SELECT run_id FROM probe_runs)
    GROUP BY run_id
),

-- dis@1 -----------------------------------------------------------------------------------

features AS (
    -- long form: one row per (run, layer, feature), feature 1..6 in signature order, with
    -- its population (probe_name, probe_config_hash), family and layer set
    SELECT
        r.run_id, r.family_id, r.probe_name, r.probe_config_hash, c.layers_covered,
        l.layer, f.feature,
        [{% for f in dis_features %}l.{{ f }}{{ ", " if not loop.last }}{% endfor %}][f.feature]::DOUBLE AS value
    FROM per_layer AS l
    JOIN probe_runs AS r ON l.run_id = r.run_id
    JOIN run_layers AS c ON l.run_id = c.run_id
    CROSS JOIN range(1, {{ dis_features | length + 1 }}) AS f(feature)
),

feature_scales AS (
    -- robust centre and scale per (population, layer, feature) over the population's runs
    SELECT
        probe_name, probe_config_hash, layer, feature,
        median(value) AS centre,
        1.4826 * mad(value) AS scale
    FROM features
    GROUP BY probe_name, probe_config_hash, layer, feature
),

standardised AS (
    -- z = 0 where the value is NULL or the population's scale is exactly 0
    SELECT
        f.run_id, f.family_id, f.probe_name, f.probe_config_hash, f.layers_covered, f.layer, f.feature,
        CASE WHEN f.value IS NULL OR s.scale = 0 THEN 0.0 ELSE (f.value - s.centre) / s.scale END AS z
    FROM features AS f
    JOIN feature_scales AS s
        ON f.probe_name = s.probe_name
        AND f.probe_config_hash = s.probe_config_hash
        AND f.layer = s.layer
        AND f.feature = s.feature
),

signatures AS (
    -- the signature vector, layer-major: the six features of the first layer, then the next
    SELECT
        run_id, family_id, probe_name, probe_config_hash, layers_covered,
        list(z ORDER BY layer, feature) AS signature_vector,
        sqrt(sum(z * z)) AS signature_norm,
        -- divided by the square root of the full vector length
        sqrt(sum(z * z)) / sqrt(count(*)) AS magnitude
    FROM standardised
    GROUP BY run_id, family_id, probe_name, probe_config_hash, layers_covered
),

seed_cosines AS (
    -- each run against the other runs (seeds) of its family in its population; pairs over
    -- different layers_covered, or with a zero vector, have no cosine and are skipped
    SELECT a.run_id, list_cosine_similarity(a.signature_vector, b.signature_vector) AS cosine
    FROM signatures AS a
    JOIN signatures AS b
        ON a.probe_name = b.probe_name
        AND a.probe_config_hash = b.probe_config_hash
        AND a.family_id = b.family_id
        AND a.run_id <> b.run_id
        AND a.layers_covered = b.layers_covered
    WHERE a.signature_norm > 0 AND b.signature_norm > 0
),

coherence AS (
    -- mean cosine clipped at 0; a run with no other comparable seed has no row (NULL)
    SELECT run_id, greatest(avg(cosine), 0.0) AS coherence
    FROM seed_cosines
    GROUP BY run_id
),

family_centroids AS (
    -- each family's centroid in its population: the mean of its runs' vectors, per layer
    -- set (vectors over different layers are not averaged together)
    SELECT
        probe_name, probe_config_hash, family_id, layers_covered,
        list(mean_z ORDER BY layer, feature) AS centroid,
        sqrt(sum(mean_z * mean_z)) AS centroid_norm
    FROM (
        SELECT probe_name, probe_config_hash, family_id, layers_covered, layer, feature, avg(z) AS mean_z
        FROM standardised
        GROUP BY probe_name, probe_config_hash, family_id, layers_covered, layer, feature
    ) AS family_means
    GROUP BY probe_name, probe_config_hash, family_id, layers_covered
),

population_families AS (
    -- families with a signature in each population: a family alone gets novelty 1
    SELECT probe_name, probe_config_hash, count(DISTINCT family_id) AS n_families
    FROM signatures
    GROUP BY probe_name, probe_config_hash
),

centroid_cosines AS (
    -- the largest cosine of each run to the centroid of another family of its population
    -- (same layer set; zero vectors skipped)
    SELECT s.run_id, max(list_cosine_similarity(s.signature_vector, c.centroid)) AS max_cosine
    FROM signatures AS s
    JOIN family_centroids AS c
        ON s.probe_name = c.probe_name
        AND s.probe_config_hash = c.probe_config_hash
        AND s.family_id <> c.family_id
        AND s.layers_covered = c.layers_covered
    WHERE s.signature_norm > 0 AND c.centroid_norm > 0
    GROUP BY s.run_id
),

scores AS (
    -- novelty is 1 for a family alone in its population; otherwise (1 - max cosine) / 2,
    -- NULL when no other family's centroid is comparable. DIS is NULL when any part is.
    SELECT
        s.run_id, s.signature_vector, s.signature_norm, s.magnitude, co.coherence,
        CASE WHEN p.n_families = 1 THEN 1.0 ELSE (1.0 - cc.max_cosine) / 2.0 END AS novelty
    FROM signatures AS s
    JOIN population_families AS p ON s.probe_name = p.probe_name AND s.probe_config_hash = p.probe_config_hash
    LEFT JOIN coherence AS co ON s.run_id = co.run_id
    LEFT JOIN centroid_cosines AS cc ON s.run_id = cc.run_id
)

-- A run without pooled captures of the module still gets its row, with NULL A/B values and
-- no signature.
SELECT
    r.run_id,
    r.family_id,
    r.seed::INTEGER AS seed,
    r.probe_name,
    r.probe_config_hash,
    r.model_id,
    r.base_checkpoint,
    r.run_mode,
    (sp.post_step - sp.pre_step)::INTEGER AS steps,
    rc.capture_steps_used::BIGINT[] AS capture_steps_used,
    rl.layers_covered::SMALLINT[] AS layers_covered,
    {%- for d in a_descriptors %}
    {%- for part in ['pre', 'post', 'delta'] %}
    rl.A_{{ d }}_{{ part }}::FLOAT[] AS A_{{ d }}_{{ part }},
    {%- endfor %}
    {%- endfor %}
    rl.A_principal_angle_post_vs_pre::FLOAT[] AS A_principal_angle_post_vs_pre,
    {%- for b in ['drift_velocity', 'drift_accel', 'volatility', 'alignment_velocity'] %}
    rl.B_{{ b }}_by_layer::FLOAT[] AS B_{{ b }}_by_layer,
    {%- endfor %}
    {%- for b in ['drift_velocity', 'drift_accel', 'volatility', 'alignment_velocity'] %}
    rl.B_{{ b }}_global::FLOAT AS B_{{ b }}_global,
    {%- endfor %}
    coalesce(af.affected_layers, [])::SMALLINT[] AS affected_layers,
    'sig@1' AS signature_version,
    sc.signature_vector::FLOAT[] AS signature_vector,
    sc.signature_norm::FLOAT AS signature_norm,
    'dis@1' AS score_version,
    sc.magnitude::FLOAT AS magnitude,
    sc.coherence::FLOAT AS coherence,
    sc.novelty::FLOAT AS novelty,
    (sc.magnitude * sc.coherence * sc.novelty)::FLOAT AS DIS,
    NULL::VARCHAR AS captures_manifest_path,
    -- the lake-relative folder of the run's probe_captures_index partition
    concat('probe_captures_index/run_id=', r.run_id) AS captures_index_path
FROM probe_runs AS r
LEFT JOIN run_spans AS sp ON r.run_id = sp.run_id
LEFT JOIN run_captures AS rc ON r.run_id = rc.run_id
LEFT JOIN run_layers AS rl ON r.run_id = rl.run_id
LEFT JOIN affected AS af ON r.run_id = af.run_id
LEFT JOIN scores AS sc ON r.run_id = sc.run_id
