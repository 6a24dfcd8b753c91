"""Queries of cost attribution and the cost views (tables of migration m0003)."""

# == InferenceRecord.end_time_ns, and at least 1 ns after the start (as attribution.Attribution.consume)
_END_NS = "greatest(start_time_ns + floor(duration_s * 1000000000)::BIGINT, start_time_ns + 1)"

# True for a self-hosted request of `requests` whose cost windows are not final yet: its cost is
# coming (*pending*), it is not unpriced. Once its windows are final and gave it no cost (the box
# has no price), it is unpriced. Its end is attribution's (_END_NS). The live views, the report and
# `costs.pending_requests` share it.
AWAITING_COST = f"""
    coalesce(cost_usd IS NULL AND cost_source = 'gpu_time'
             AND {_END_NS} > (SELECT coalesce(max(window_end_ns), 0) FROM cost_windows), false)
"""

# Self-hosted requests that may overlap [$a_ns, $b_ns): the activities attribution splits over.
_ACTS = f"""
    SELECT request_id, start_time_ns AS start_ns, {_END_NS} AS end_ns,
           CASE WHEN input_tokens IS NULL AND output_tokens IS NULL THEN NULL
                ELSE coalesce(input_tokens, 0) + coalesce(output_tokens, 0) END AS tokens,
           coalesce(request_model, response_model) AS model, tenant, endpoint, operation
    FROM requests
    WHERE cost_source = 'gpu_time' AND request_id IS NOT NULL
      AND start_time_ns >= $lo_ns AND start_time_ns < $b_ns AND {_END_NS} > $a_ns
"""
# One row per (activity, window in [$a_ns, $b_ns) it overlaps): ws, and the overlap [s, e). Narrow
# (ids and numbers): the shares' window functions run over these rows, and carrying the labels
# through them measured 4.7 against 3.2 µs per share; the labels are joined back at the end.
_EXPAND = """
    SELECT request_id, ws, greatest(start_ns, ws) AS s, least(end_ns, ws + $step_ns) AS e, start_ns, end_ns, tokens
    FROM (SELECT request_id, start_ns, end_ns, tokens,
                 unnest(range(greatest(start_ns - start_ns % $step_ns, $a_ns), least(end_ns, $b_ns), $step_ns)) AS ws
          FROM acts)
"""

QUERIES = {
    # -- attribution ------------------------------------------------------------------------------
    "costs.instance_prices": """
        SELECT * FROM instance_prices WHERE host = $host ORDER BY effective_from_ns
    """,
    "costs.insert_instance_price": """
        INSERT OR REPLACE INTO instance_prices VALUES ($host, $effective_from_ns, $hourly_usd, $cloud, $instance_type,
            $pricing, $gpu_type, $gpu_count, $region, $grid_gco2e_per_kwh, $pue, $source, $recorded_at_ns)
    """,
    "costs.last_window_end": """
        SELECT max(window_end_ns) AS end_ns FROM cost_windows WHERE host = $host
    """,
    "costs.gpus_seen": """
        SELECT count(DISTINCT gpu_uuid) AS n FROM gpu_samples
        WHERE host = $host AND ts_ns >= $since_ns AND parent_uuid IS NULL
    """,
    "costs.gpu_energy_samples": """
        SELECT ts_ns, gpu_uuid, power_w, energy_j FROM gpu_samples
        WHERE host = $host AND ts_ns >= $lo_ns AND ts_ns < $hi_ns AND parent_uuid IS NULL
    """,
    "costs.max_duration": """
        SELECT max(duration_s) AS max_s FROM requests
        WHERE cost_source = 'gpu_time' AND start_time_ns >= $since_ns
    """,
    # The same requests as rows, for the Python split (attribution._insert_shares' fallback).
    "costs.activities": _ACTS,
    # Attribution of the windows [$a_ns, $b_ns) (aligned, $step_ns apart), in two statements (see
    # cost/attribution.py): per-window aggregates for Python to price and write the window rows,
    # then every active request's shares, computed here. Both expand each self-hosted request
    # overlapping the range into one row per window it touches; a request starts at or after $lo_ns
    # (the range's start less the longest request seen).
    "costs.window_activity": f"""
        WITH acts AS ({_ACTS}),
        x AS ({_EXPAND}),
        y AS (SELECT ws, s, e, tokens,
                     max(e) OVER (PARTITION BY ws ORDER BY s, e ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_e
              FROM x)
        SELECT ws, count(*) AS n,
               sum(greatest(0, e - greatest(s, coalesce(prev_e, s))))::BIGINT AS busy_ns,  -- union of the overlaps
               bool_and(coalesce(tokens, 0) <> 0) AS all_tokens
        FROM y GROUP BY ws ORDER BY ws
    """,
    # Shares by largest remainder, exactly as cost.windows.attribute_window (the reference the tests
    # hold this to): weight = overlap, or tokens x overlap x 2^20 // duration; each total T splits
    # as floor(T x w / W) plus one unit to the `T - sum of floors` largest remainders (ties: smaller
    # request_id); all-zero weights split equally. The window parameters come as parallel lists.
    "costs.insert_request_shares": f"""
        INSERT INTO request_costs
        WITH p AS (
            SELECT unnest($ws::BIGINT[]) AS ws, unnest($cost_n::BIGINT[])::HUGEINT AS cost_t,
                   unnest($usage_n::BIGINT[])::HUGEINT AS usage_t, unnest($energy_mj::BIGINT[])::HUGEINT AS energy_t,
                   unnest($by_tokens::BOOLEAN[]) AS by_tokens, unnest($gpus::INTEGER[]) AS gpus,
                   unnest($co2::DOUBLE[]) AS co2, unnest($busy_s::DOUBLE[]) AS busy_s
        ),
        acts AS ({_ACTS}),
        x AS ({_EXPAND}),
        w AS (
            SELECT request_id, ws, cost_t, usage_t, energy_t, e - s AS o,
                   CASE WHEN by_tokens THEN tokens::HUGEINT * (e - s) * 1048576 // (end_ns - start_ns) ELSE (e - s)::HUGEINT END AS wt
            FROM x JOIN p USING (ws)
        ),
        t AS (SELECT w.*, sum(wt) OVER (PARTITION BY ws) AS wsum, count(*) OVER (PARTITION BY ws) AS n FROM w),
        r AS (
            SELECT request_id, ws, o, wt, wsum, cost_t, usage_t, energy_t,
                   cost_t * ew // ewsum AS c_q, cost_t * ew % ewsum AS c_r,
                   usage_t * ew // ewsum AS u_q, usage_t * ew % ewsum AS u_r,
                   energy_t * ew // ewsum AS e_q, energy_t * ew % ewsum AS e_r
            FROM (SELECT t.*, CASE WHEN wsum > 0 THEN wt ELSE 1 END AS ew, CASE WHEN wsum > 0 THEN wsum ELSE n END AS ewsum FROM t)
        ),
        parts AS (
            SELECT request_id, ws, o, wt, wsum,
                c_q + (row_number() OVER (PARTITION BY ws ORDER BY c_r DESC, request_id)
                       <= cost_t - sum(c_q) OVER (PARTITION BY ws))::INTEGER AS alloc_n,
                u_q + (row_number() OVER (PARTITION BY ws ORDER BY u_r DESC, request_id)
                       <= usage_t - sum(u_q) OVER (PARTITION BY ws))::INTEGER AS usage_n,
                e_q + (row_number() OVER (PARTITION BY ws ORDER BY e_r DESC, request_id)
                       <= energy_t - sum(e_q) OVER (PARTITION BY ws))::INTEGER AS energy_n
            FROM r
        )
        SELECT parts.request_id, $host, ws, o / 1e9, wt::DOUBLE / (CASE WHEN wsum = 0 THEN 1 ELSE wsum END)::DOUBLE AS frac,
               (alloc_n::DECIMAL(38, 0) * 0.000000001)::DECIMAL(18, 9),
               (usage_n::DECIMAL(38, 0) * 0.000000001)::DECIMAL(18, 9),
               energy_n::BIGINT,
               CASE WHEN coalesce(gpus, 0) <> 0 THEN busy_s * gpus * frac END,
               energy_n::DOUBLE * co2,
               CASE WHEN by_tokens THEN 'tokens' ELSE 'time' END,
               model, tenant, endpoint, operation
        FROM parts JOIN p USING (ws) JOIN acts USING (request_id)
    """,
    # The requests whose last window is now final (they end in ($from_ns, $hi_ns]): the earliest
    # start among them, then their totals (the sum of their allocation shares) into requests.cost_usd.
    "costs.finished_min_start": f"""
        SELECT min(start_time_ns) AS start_ns FROM requests
        WHERE cost_source = 'gpu_time' AND start_time_ns >= $lo_ns AND start_time_ns < $hi_ns
          AND {_END_NS} > $from_ns AND {_END_NS} <= $hi_ns
    """,
    "costs.update_finished_totals": f"""
        UPDATE requests SET cost_usd = t.cost_usd
        FROM (
            SELECT request_id, sum(allocation_cost_usd) AS cost_usd
            FROM request_costs
            WHERE host = $host AND window_start_ns >= $lo_ns - $step_ns AND window_start_ns < $hi_ns
              AND request_id IN (
                  SELECT request_id FROM requests
                  WHERE cost_source = 'gpu_time' AND start_time_ns >= $lo_ns AND start_time_ns < $hi_ns
                    AND {_END_NS} > $from_ns AND {_END_NS} <= $hi_ns)
            GROUP BY request_id
        ) t
        WHERE requests.request_id = t.request_id AND requests.cost_source = 'gpu_time'
          AND requests.start_time_ns >= $lo_ns AND requests.start_time_ns < $hi_ns
    """,
    "costs.delete_request_costs": """
        DELETE FROM request_costs WHERE host = $host AND window_start_ns >= $start_ns AND window_start_ns < $end_ns
    """,
    "costs.delete_windows": """
        DELETE FROM cost_windows WHERE host = $host AND window_start_ns >= $start_ns AND window_start_ns < $end_ns
    """,
    # Conservation, per window: rows that break an identity of m0003 (none, when all is well).
    "costs.conservation_violations": """
        WITH s AS (
            SELECT host, window_start_ns, sum(allocation_cost_usd) AS alloc, sum(usage_cost_usd) AS usage,
                   sum(energy_mj) AS energy, count(*) AS n
            FROM request_costs WHERE window_start_ns >= $since_ns GROUP BY ALL
        )
        SELECT w.host, w.window_start_ns, w.instance_cost_usd, w.allocated_cost_usd, w.unallocated_cost_usd,
               w.usage_cost_usd, w.idle_cost_usd, s.alloc, s.usage, w.energy_mj, w.idle_energy_mj, s.energy,
               w.requests, s.n
        FROM cost_windows w LEFT JOIN s USING (host, window_start_ns)
        WHERE w.window_start_ns >= $since_ns AND (
               coalesce(s.n, 0) <> w.requests
            OR w.allocated_cost_usd + w.unallocated_cost_usd <> w.instance_cost_usd
            OR w.usage_cost_usd + w.idle_cost_usd <> w.instance_cost_usd
            OR coalesce(s.alloc, 0) <> w.allocated_cost_usd
            OR coalesce(s.usage, 0) <> w.usage_cost_usd
            OR coalesce(s.energy, 0) + w.idle_energy_mj <> w.energy_mj)
        ORDER BY w.window_start_ns
        LIMIT 100
    """,
}

# -- views ------------------------------------------------------------------------------------------
QUERIES.update({
    "costs.windows_total": """
        SELECT count(*)                        AS windows,
               min(window_start_ns)            AS first_ns,
               max(window_end_ns)              AS last_ns,
               sum(instance_cost_usd)          AS instance_cost_usd,
               sum(usage_cost_usd)             AS usage_cost_usd,
               sum(idle_cost_usd)              AS idle_cost_usd,
               sum(allocated_cost_usd)         AS allocated_cost_usd,
               sum(unallocated_cost_usd)       AS unallocated_cost_usd,
               sum(energy_mj)::BIGINT          AS energy_mj,
               sum(idle_energy_mj)::BIGINT     AS idle_energy_mj,
               sum(co2e_g)                     AS co2e_g,
               sum(busy_s)                     AS busy_s,
               sum(window_end_ns - window_start_ns) / 1e9 AS window_s
        FROM cost_windows
        WHERE window_start_ns >= $since_ns AND window_start_ns < $until_ns
    """,
    # Self-hosted requests still running in windows that are not final yet (their cost is coming).
    "costs.pending_requests": f"""
        WITH w AS (SELECT coalesce(max(window_end_ns), 0) AS end_ns FROM cost_windows)
        SELECT count(*) AS n FROM requests, w
        WHERE start_time_ns >= w.end_ns - 3600000000000 AND start_time_ns < $until_ns AND {AWAITING_COST}
    """,
    # The price each host has now (its latest instance_prices row) and when it was last seen alive
    # (its last final window, or the price row an agent wrote when it started).
    "costs.current_prices": """
        SELECT p.host, p.hourly_usd, p.source, p.instance_type, p.pricing, p.gpu_type, p.gpu_count, p.region,
               greatest(p.recorded_at_ns, (SELECT max(window_end_ns) FROM cost_windows w WHERE w.host = p.host))
                   AS last_seen_ns
        FROM instance_prices p
        QUALIFY row_number() OVER (PARTITION BY p.host ORDER BY p.effective_from_ns DESC) = 1
        ORDER BY p.host
    """,
})
