-- name: matches
-- version: match@1.1
-- target: matches
-- kind: merging (runs = signatures, groups = signatures(kind, scope, vector_layout), pairwise = true)
-- grain: signature_id_a, signature_id_b
-- param tolerance: float = 0.05 in [0, 1] | largest |delta t| (inclusive) at which two events of the same layer and metric match
-- param top_k: int = 10 >= 1 | partners kept per signature (at least 1), best score first
-- description: Each signature's top-k partners among the signatures of the same kind, scope
--   and vector_layout (ordered pairs a != b): cosine of the vectors, precision and recall
--   of the events (same layer and metric within the time tolerance), their F1, the mean
--   offset of a's matched events, and score = 0.7 * (1 + cosine) / 2 + 0.3 * F1 (the
--   cosine term again when either side has no events), ranked per signature. match@1.1:
--   the match@1 formula; new runs' signatures are merged into the last build's matches.
{% import 'macros/series.sql' as series %}

-- Cost: n signatures of one layout make n^2 ordered pairs, each a dot product of two long
-- vectors. The cosine is computed once per unordered pair, on vectors scaled to unit
-- length once per signature, and both directions come out of that one row. Events are
-- compared only where two signatures have an event of the same layer and metric (a join of
-- the unnested event lists), so pairs without any event in common cost nothing there. The
-- top k of each signature are kept by a top-k aggregate: no sort of all the pairs.
-- Merging new runs (`adding`): a pair's score depends on its two signatures alone, so an
-- earlier signature's new top k is the top k of its last partners and its pairs with the
-- new signatures; only pairs with a new side are computed.
WITH vector_norms AS (
    -- the L2 norm of each vector in DOUBLE, NULL when the vector is empty or holds a NULL
    -- or NaN (such a vector has no cosine); the stored norm column is float32
    SELECT
        *,
        CASE
            WHEN list_bool_and(list_transform(vector, lambda x: coalesce(isfinite(x), false)))
            THEN sqrt(list_sum(list_transform(vector, lambda x: x::DOUBLE * x::DOUBLE)))
        END AS vector_norm
    FROM signatures
),

signature_vectors AS (
    -- one row per signature: a dense integer id that sorts like signature_id (the tie
    -- break of the ranking), an integer id of its group (pairs only form inside one), and
    -- its vector scaled to unit length in DOUBLE, NULL for a zero vector. An event is a
    -- position in the aligned event lists.
    SELECT
        row_number() OVER (ORDER BY signature_id) AS sig,
        dense_rank() OVER (ORDER BY kind, scope, vector_layout) AS grp,
        signature_id,
        run_id,
        len(vector) AS dim,
        CASE WHEN vector_norm > 0 THEN list_transform(vector, lambda x: x::DOUBLE / vector_norm) END AS unit_vector,
        greatest(len(event_t), len(event_layers), len(event_metrics)) AS n_events,
        event_t,
        event_layers,
        event_metrics{{ "," if adding }}
        {%- if adding %}
        run_id IN (SELECT run_id FROM added_runs) AS is_new
        {%- endif %}
    FROM vector_norms
),

signature_events AS (
    -- one row per event: the lists unnested side by side (a shorter list pads with NULL);
    -- a NULL or NaN t counts as an event of its signature that matches nothing
    SELECT
        sig,
        grp,
        event_index,
        layer,
        metric,
        {{ series.finite_or_null('t') }} AS t{{ "," if adding }}
        {%- if adding %}
        is_new
        {%- endif %}
    FROM (
        SELECT
            sig,
            grp,
            {%- if adding %}
            is_new,
            {%- endif %}
            unnest(range(n_events)) AS event_index,
            unnest(event_layers) AS layer,
            unnest(event_metrics) AS metric,
            unnest(event_t) AS t
        FROM signature_vectors
    )
),

nearest_events AS (
    -- each event of a with a qualifying event in b (same layer and metric, |delta t| within
    -- the tolerance): the offset to the nearest of them. Inclusive, on the stored float32
    -- values: both t and the tolerance as float32 (the tolerance as the output records it),
    -- their difference exact in DOUBLE. So events stored at t = 0 and t = 0.05 match at the
    -- default tolerance, while t = 0.25 and t = 0.3 do not (0.3 is stored as 0.30000001).
    SELECT
        a.sig AS sig_a,
        b.sig AS sig_b,
        a.event_index,
        min(abs(b.t::DOUBLE - a.t::DOUBLE)) AS offset_t
    FROM signature_events AS a
    JOIN signature_events AS b
        ON a.grp = b.grp
        AND a.layer = b.layer
        AND a.metric = b.metric
        AND a.sig <> b.sig
        AND abs(b.t::DOUBLE - a.t::DOUBLE) <= CAST({{ tolerance }} AS FLOAT)::DOUBLE
        {%- if adding %}
        AND (a.is_new OR b.is_new)
        {%- endif %}
    GROUP BY a.sig, b.sig, a.event_index
),

matched_events AS (
    -- per unordered pair (lo < hi) with any match: how many of each side's events have a
    -- partner in the other, and their mean offset; one row, so one join per pair below
    SELECT
        least(sig_a, sig_b) AS sig_lo,
        greatest(sig_a, sig_b) AS sig_hi,
        count(*) FILTER (WHERE sig_a < sig_b) AS n_matched_lo,
        avg(offset_t) FILTER (WHERE sig_a < sig_b) AS offset_lo,
        count(*) FILTER (WHERE sig_a > sig_b) AS n_matched_hi,
        avg(offset_t) FILTER (WHERE sig_a > sig_b) AS offset_hi
    FROM nearest_events
    GROUP BY least(sig_a, sig_b), greatest(sig_a, sig_b)
),

pair_cosines AS (
    -- one row per unordered pair of a group (lo < hi). Vectors of different lengths under
    -- one layout cannot be compared: NULL cosine, like a zero vector.
    SELECT
        lo.sig AS sig_lo,
        hi.sig AS sig_hi,
        lo.n_events AS n_events_lo,
        hi.n_events AS n_events_hi,
        CASE WHEN lo.dim = hi.dim THEN list_dot_product(lo.unit_vector, hi.unit_vector) END AS cosine
    FROM signature_vectors AS lo
    JOIN signature_vectors AS hi
        ON lo.grp = hi.grp
        AND lo.sig < hi.sig
        {%- if adding %}
        AND (lo.is_new OR hi.is_new)
        {%- endif %}
),

pair_events AS (
    -- the unordered pair with each side's matched events (0 when nothing matched)
    SELECT
        p.*,
        coalesce(m.n_matched_lo, 0) AS n_matched_lo,
        m.offset_lo,
        coalesce(m.n_matched_hi, 0) AS n_matched_hi,
        m.offset_hi
    FROM pair_cosines AS p
    LEFT JOIN matched_events AS m
        ON m.sig_lo = p.sig_lo
        AND m.sig_hi = p.sig_hi
),

ordered_pairs AS (
    -- both directions of every unordered pair: (lo, hi) and (hi, lo)
    SELECT
        CASE WHEN d.lo_first THEN sig_lo ELSE sig_hi END AS sig_a,
        CASE WHEN d.lo_first THEN sig_hi ELSE sig_lo END AS sig_b,
        cosine,
        CASE WHEN d.lo_first THEN n_events_lo ELSE n_events_hi END AS n_events_a,
        CASE WHEN d.lo_first THEN n_events_hi ELSE n_events_lo END AS n_events_b,
        CASE WHEN d.lo_first THEN n_matched_lo ELSE n_matched_hi END AS n_matched_a,
        CASE WHEN d.lo_first THEN n_matched_hi ELSE n_matched_lo END AS n_matched_b,
        CASE WHEN d.lo_first THEN offset_lo ELSE offset_hi END AS mean_abs_offset_t
    FROM pair_events
    CROSS JOIN (VALUES (true), (false)) AS d(lo_first)
),

pair_precision AS (
    -- precision NULL when a has no events, 0 when only b has none; recall mirrored
    SELECT
        *,
        CASE WHEN n_events_a > 0 THEN n_matched_a / n_events_a END AS event_precision,
        CASE WHEN n_events_b > 0 THEN n_matched_b / n_events_b END AS event_recall
    FROM ordered_pairs
),

pair_f1 AS (
    -- F1 NULL when either side has no events; 0 (not 0/0) when both shares are 0
    SELECT
        *,
        CASE
            WHEN event_precision + event_recall > 0
            THEN 2 * event_precision * event_recall / (event_precision + event_recall)
            WHEN event_precision + event_recall = 0 THEN 0.0
        END AS event_f1
    FROM pair_precision
),

pair_scores AS (
    -- a NULL cosine gives a NULL score, whatever the events; the score is ranked as stored
    -- (float32), so scores equal there tie and signature_id_b decides
    SELECT
        *,
        (0.7 * (1 + cosine) / 2 + 0.3 * coalesce(event_f1, (1 + cosine) / 2))::FLOAT AS score
    FROM pair_f1
),

scored_partners AS (
    SELECT sig_a, sig_b, cosine, event_precision, event_recall, event_f1, mean_abs_offset_t, score
    FROM pair_scores
    {%- if adding %}
    UNION ALL
    -- an earlier signature's partners in the last build, as stored (float32: what a
    -- full build would store and rank too)
    SELECT
        a.sig AS sig_a,
        b.sig AS sig_b,
        p.vector_cosine AS cosine,
        p.event_precision,
        p.event_recall,
        p.event_f1,
        p.mean_abs_offset_t,
        p.score
    FROM previous_output AS p
    JOIN signature_vectors AS a
        ON a.signature_id = p.signature_id_a
    JOIN signature_vectors AS b
        ON b.signature_id = p.signature_id_b
    {%- endif %}
),

top_partners AS (
    -- each a's k best partners, best first: score descending with NULL last, then
    -- signature_id_b ascending (the smaller sig); rank_a is the position in that list
    SELECT
        sig_a,
        unnest(
            list_transform(
                max_by(
                    {
                        sig_b: sig_b, cosine: cosine, event_precision: event_precision,
                        event_recall: event_recall, event_f1: event_f1,
                        mean_abs_offset_t: mean_abs_offset_t, score: score
                    },
                    {has_score: score IS NOT NULL, score: coalesce(score, 0), sig_order: -sig_b},
                    {{ top_k }}
                ),
                lambda partner, position: struct_insert(partner, rank_a := position)
            )
        ) AS partner
    FROM scored_partners
    GROUP BY sig_a
)

SELECT
    substr(sha256(concat_ws('|', getvariable('analysis_id'), a.signature_id, b.signature_id)), 1, 32) AS match_id,
    -- the formula's version: match@1.1 builds the match@1 formula (the model's own version
    -- is the analysis's, in warehouse_analyses)
    'match@1' AS match_version,
    a.signature_id AS signature_id_a,
    b.signature_id AS signature_id_b,
    a.run_id AS run_id_a,
    b.run_id AS run_id_b,
    t.partner.cosine::FLOAT AS vector_cosine,
    t.partner.event_precision::FLOAT AS event_precision,
    t.partner.event_recall::FLOAT AS event_recall,
    t.partner.event_f1::FLOAT AS event_f1,
    t.partner.mean_abs_offset_t::FLOAT AS mean_abs_offset_t,
    t.partner.score AS score,
    t.partner.rank_a::INTEGER AS rank_a,
    CAST({{ tolerance }} AS FLOAT) AS timewarp_tolerance
FROM top_partners AS t
JOIN signature_vectors AS a
    ON a.sig = t.sig_a
JOIN signature_vectors AS b
    ON b.sig = t.partner.sig_b
