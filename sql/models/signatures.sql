-- name: signatures
-- version: sig@1.1
-- target: signatures
-- kind: per_run
-- grain: run_id, kind, scope, layer
-- param sample_set: str = '' | sample set the trajectories are read from; empty: each run's alphabetically first sample set with pooled rows
-- param bins: int = 16 >= 2 | K, the bins of equal width in normalised time per series
-- description: Matchable signatures of runs. Trajectory signatures per run (scope run) and
--   per (run, layer) (scope layer): every pooled <module>.<descriptor> series binned into K
--   bins of its own normalised time, the bin means z-normalised and concatenated in
--   (layer, module, descriptor) order, with the run's (or the layer's) event candidates
--   and their peak times. Probe signatures: one per probe_summaries row, its dis@1
--   signature vector with the run's event candidates. Every signature is the sig@1
--   formula and reads its own run only, so runs are built incrementally (sig@1.1: sig@1
--   built per run).
{% import 'macros/series.sql' as series %}
{#- the vector's block order: descriptors (and modules, below) alphabetically #}
{% set ordered_descriptors = descriptors | sort %}

-- Trajectories: one row per series and bin, then one list of K values per series, so the
-- filling, normalising and concatenating are list arithmetic on a few thousand rows
-- rather than further passes over geometry_state.
WITH analysed AS (
    {{ series.analysed_sample_sets(sample_set) }}
),

spans AS (
    -- a series' span is its module's: every descriptor of a (layer, module) is read at the
    -- same captures, and a NULL value (principal_angle_prev at the first capture) neither
    -- shortens the span nor moves the other captures' t
    SELECT s.run_id, s.sample_set, s.layer, s.module, s.first_step, s.last_step
    FROM ({{ series.series_spans() }}) AS s
    JOIN analysed AS a
        ON s.run_id = a.run_id
        AND s.sample_set = a.sample_set
),

layer_spans AS (
    -- a layer's span, for the t of its composite events (its modules share steps anyway)
    SELECT run_id, layer, min(first_step) AS first_step, max(last_step) AS last_step
    FROM spans
    GROUP BY run_id, layer
),

binned_captures AS (
    -- bin = min(floor(t * K), K - 1): t = 1 (the last capture) falls in the last bin.
    -- NaN and infinity count as NULL.
    SELECT
        g.run_id, g.layer, g.module,
        least(floor({{ series.normalised_t('g.step', 's.first_step', 's.last_step') }} * {{ bins }}), {{ bins }} - 1)::INTEGER AS bin,
        {%- for d in descriptors %}
        ({{ series.finite_or_null('g.' ~ d) }})::DOUBLE AS {{ d }}{{ "," if not loop.last }}
        {%- endfor %}
    FROM geometry_state AS g
    JOIN spans AS s
        ON g.run_id = s.run_id
        AND g.sample_set = s.sample_set
        AND g.layer = s.layer
        AND g.module = s.module
    WHERE g.sample_id IS NULL
),

bin_means AS (
    -- a bin whose captures hold no value of a descriptor has a NULL mean: it is empty
    SELECT
        run_id, layer, module, bin,
        {%- for d in descriptors %}
        avg({{ d }}) AS {{ d }}{{ "," if not loop.last }}
        {%- endfor %}
    FROM binned_captures
    GROUP BY run_id, layer, module, bin
),

series_bins AS (
    -- one row per series (run, layer, module, descriptor): its non-empty bins ascending and
    -- their means; both NULL when the series holds no value at all
    {%- for d in descriptors %}
    SELECT
        run_id, layer, module, '{{ d }}' AS descriptor,
        list(bin ORDER BY bin) FILTER (WHERE {{ d }} IS NOT NULL) AS filled_bins,
        list({{ d }} ORDER BY bin) FILTER (WHERE {{ d }} IS NOT NULL) AS means
    FROM bin_means
    GROUP BY run_id, layer, module
    {{ "UNION ALL" if not loop.last }}
    {%- endfor %}
),

series_values AS (
    -- K values per series. Bin b takes the mean of the last non-empty bin <= b: its own, or
    -- the previous bin's value when empty. A leading empty bin has no such bin (k = 0) and
    -- takes the first non-empty bin's mean (index 1).
    SELECT
        run_id, layer, module, descriptor,
        list_transform(
            range({{ bins }}),
            lambda b: means[greatest(len(list_filter(filled_bins, lambda f: f <= b)), 1)]
        ) AS bin_values
    FROM series_bins
),

series_stats AS (
    SELECT *, list_avg(bin_values) AS mean, list_stddev_pop(bin_values) AS std
    FROM series_values
),

series_z AS (
    -- z with the population std (ddof 0); all zeros when the std is below 1e-12: a flat
    -- series, and (our reading) a series without any value, so that runs with the same
    -- layers and modules keep the same vector layout
    SELECT
        run_id, layer, module, descriptor,
        CASE
            WHEN coalesce(std, 0.0) < 1e-12 THEN list_transform(bin_values, lambda v: 0.0)
            ELSE list_transform(bin_values, lambda v: (v - mean) / std)
        END AS z
    FROM series_stats
),

layer_vectors AS (
    -- a layer's series, modules and then descriptors alphabetically; the layout names each
    -- series with its layer, so layer signatures match only the same layer of other runs
    SELECT
        run_id, layer,
        flatten(list(z ORDER BY module, descriptor)) AS vector,
        string_agg(layer::VARCHAR || ':' || module || '.' || descriptor, ',' ORDER BY module, descriptor) AS series_names
    FROM series_z
    GROUP BY run_id, layer
),

run_vectors AS (
    SELECT
        run_id,
        flatten(list(vector ORDER BY layer)) AS vector,
        string_agg(series_names, ',' ORDER BY layer) AS series_names
    FROM layer_vectors
    GROUP BY run_id
),

-- Events: every candidate's peak t over its own series, then listed per run and per layer.
event_times AS (
    -- a <module>.<descriptor> event's series is its module's (same span for every
    -- descriptor); a composite event's is its layer's. An event whose series is not in the
    -- analysed sample set has a NULL t.
    SELECT
        e.run_id, e.layer, e.metric, e.step, e.score, e.event_id,
        ({{ series.normalised_t('e.step', 'coalesce(s.first_step, l.first_step)', 'coalesce(s.last_step, l.last_step)') }})::FLOAT AS t
    FROM events_candidates AS e
    LEFT JOIN spans AS s
        ON e.metric <> '__composite__'
        AND e.run_id = s.run_id
        AND e.layer = s.layer
        AND split_part(e.metric, '.', 1) = s.module
    LEFT JOIN layer_spans AS l
        ON e.metric = '__composite__'
        AND e.run_id = l.run_id
        AND e.layer = l.layer
),

-- Event lists are ordered by the stored (FLOAT) t, then layer, metric, step (event_id only
-- breaks what cannot tie: one event per run, layer, metric and step); NULL t last.
run_events AS (
    -- a run's every event, composite ones included
    SELECT
        run_id,
        list(t ORDER BY t, layer, metric, step, event_id) AS event_t,
        list(step ORDER BY t, layer, metric, step, event_id) AS event_steps,
        list(layer ORDER BY t, layer, metric, step, event_id) AS event_layers,
        list(metric ORDER BY t, layer, metric, step, event_id) AS event_metrics,
        list(score ORDER BY t, layer, metric, step, event_id) AS event_scores
    FROM event_times
    GROUP BY run_id
),

layer_events AS (
    -- a layer's events only, composite ones included
    SELECT
        run_id, layer,
        list(t ORDER BY t, metric, step, event_id) AS event_t,
        list(step ORDER BY t, metric, step, event_id) AS event_steps,
        list(layer ORDER BY t, metric, step, event_id) AS event_layers,
        list(metric ORDER BY t, metric, step, event_id) AS event_metrics,
        list(score ORDER BY t, metric, step, event_id) AS event_scores
    FROM event_times
    GROUP BY run_id, layer
),

run_seeds AS (
    -- the seed a run's geometry carries: the fallback for a run without a runs row
    SELECT run_id, min(seed) AS seed
    FROM geometry_state
    WHERE sample_id IS NULL
    GROUP BY run_id
),

signature_rows AS (
    {%- for scope, layer, event_match in [
        ('run', 'NULL::SMALLINT', 'v.run_id = e.run_id'),
        ('layer', 'v.layer', 'v.run_id = e.run_id AND v.layer = e.layer')] %}
    SELECT
        v.run_id, 'trajectory' AS kind, '{{ scope }}' AS scope, {{ layer }} AS layer,
        r.family_id, coalesce(r.seed, g.seed) AS seed, r.probe_name,
        v.vector,
        'trajectory:K=' || {{ bins }} || ';series=' || v.series_names AS vector_layout,
        NULL::DOUBLE AS stored_norm,
        e.event_t, e.event_steps, e.event_layers, e.event_metrics, e.event_scores,
        '' AS probe_key
    FROM {{ scope }}_vectors AS v
    JOIN run_seeds AS g ON v.run_id = g.run_id
    LEFT JOIN runs AS r ON v.run_id = r.run_id
    LEFT JOIN {{ scope }}_events AS e ON {{ event_match }}

    UNION ALL
    {% endfor %}

    -- Probe signatures: one per probe_summaries row with a signature vector (a row without
    -- one has nothing to match). Family, seed and probe are the row's own key, which the
    -- summary copies from runs; a run may hold several probes' rows, so the key also goes
    -- into the signature id.
    SELECT
        p.run_id, 'probe' AS kind, 'run' AS scope, NULL::SMALLINT AS layer,
        p.family_id, p.seed, p.probe_name,
        p.signature_vector::DOUBLE[] AS vector,
        'probe:layers=' || coalesce(array_to_string(p.layers_covered, ','), '')
            || ';features={{ dis_features | join(",") }}' AS vector_layout,
        p.signature_norm::DOUBLE AS stored_norm,
        e.event_t, e.event_steps, e.event_layers, e.event_metrics, e.event_scores,
        concat_ws('|', p.family_id, p.seed, p.probe_name, p.probe_config_hash) AS probe_key
    FROM probe_summaries AS p
    LEFT JOIN run_events AS e ON p.run_id = e.run_id
    WHERE p.signature_vector IS NOT NULL
)

SELECT
    substr(sha256(concat_ws('|', getvariable('analysis_id'), run_id, kind, scope, coalesce(layer::VARCHAR, ''), probe_key)), 1, 32) AS signature_id,
    run_id,
    kind,
    scope,
    layer::SMALLINT AS layer,
    family_id,
    seed::INTEGER AS seed,
    probe_name,
    -- the formula's version: sig@1.1 builds the sig@1 formula per run
    'sig@1' AS signature_version,
    vector::FLOAT[] AS vector,
    vector_layout,
    -- a probe row keeps its signature_norm; the L2 norm of the vector where it has none
    coalesce(stored_norm, sqrt(list_sum(list_transform(vector, lambda x: x * x))), 0.0)::FLOAT AS norm,
    -- a run (or layer) without events has empty lists, never NULL
    coalesce(event_t, []::FLOAT[]) AS event_t,
    coalesce(event_steps, []::BIGINT[]) AS event_steps,
    coalesce(event_layers, []::SMALLINT[]) AS event_layers,
    coalesce(event_metrics, []::VARCHAR[]) AS event_metrics,
    coalesce(event_scores, []::FLOAT[]) AS event_scores
FROM signature_rows
