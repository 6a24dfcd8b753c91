"""Queries of cost attribution and the cost views (tables of migration m0003)."""

# == InferenceRecord.end_time_ns, and at least 1 ns after the start (as attribution.Activities.add_records)
_END_NS = "greatest(start_time_ns + floor(duration_s * 1000000000)::BIGINT, start_time_ns + 1)"

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
    "costs.activities": f"""
        SELECT request_id, start_time_ns AS start_ns, {_END_NS} AS end_ns,
               CASE WHEN input_tokens IS NULL AND output_tokens IS NULL THEN NULL
                    ELSE coalesce(input_tokens, 0) + coalesce(output_tokens, 0) END AS tokens,
               coalesce(request_model, response_model) AS model, tenant, endpoint, operation
        FROM requests
        WHERE cost_source = 'gpu_time' AND start_time_ns >= $lo_ns AND start_time_ns < $hi_ns
          AND {_END_NS} > $after_ns
    """,
    "costs.delete_request_costs": """
        DELETE FROM request_costs WHERE host = $host AND window_start_ns >= $start_ns AND window_start_ns < $end_ns
    """,
    "costs.delete_windows": """
        DELETE FROM cost_windows WHERE host = $host AND window_start_ns >= $start_ns AND window_start_ns < $end_ns
    """,
    # Totals over the windows [$lo_ns, $hi_ns) of the requests in $ids, written to requests.cost_usd.
    "costs.update_request_totals": """
        UPDATE requests SET cost_usd = t.cost_usd
        FROM (
            SELECT request_id, sum(allocation_cost_usd) AS cost_usd
            FROM request_costs
            WHERE host = $host AND window_start_ns >= $lo_ns AND window_start_ns < $hi_ns
              AND request_id IN (SELECT unnest($ids::UBIGINT[]))
            GROUP BY request_id
        ) t
        WHERE requests.request_id = t.request_id AND requests.cost_source = 'gpu_time'
          AND requests.start_time_ns >= $lo_ns AND requests.start_time_ns < $hi_ns
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
        WITH w AS (SELECT coalesce(max(window_end_ns), 0) AS end_ns FROM cost_windows WHERE instance_cost_usd IS NOT NULL)
        SELECT count(*) AS n FROM requests, w
        WHERE cost_source = 'gpu_time' AND cost_usd IS NULL AND start_time_ns >= w.end_ns - 3600000000000
          AND start_time_ns < $until_ns AND {_END_NS} > w.end_ns
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
