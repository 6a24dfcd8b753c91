"""Queries the exporters run: cost totals for metrics, FOCUS rows, and the fleet Parquet export.

Money stays DECIMAL(18, 9) all the way out. Every window bound is a parameter in wall-clock ns.
"""

QUERIES = {
    # Self-hosted cost known only after attribution: what requests used (usage view) per model
    # and tenant, and what no request used (idle) per host, over windows ending after $since_ns.
    # usage + idle == the instance cost of those windows, so by-source totals add up to the bill.
    "exports.stored_cost_totals": """
        SELECT 'gpu_time' AS source, model, tenant, host AS resource, sum(usage_cost_usd) AS amount_usd
        FROM request_costs
        WHERE window_start_ns >= $since_ns AND usage_cost_usd IS NOT NULL
        GROUP BY ALL
        UNION ALL
        SELECT 'idle' AS source, NULL AS model, NULL AS tenant, host AS resource, sum(idle_cost_usd) AS amount_usd
        FROM cost_windows
        WHERE window_start_ns >= $since_ns AND idle_cost_usd IS NOT NULL
        GROUP BY ALL
    """,

    # -- FOCUS: one origin charge per host and hour (the box's price), split into allocated charges.
    "exports.focus_origins": """
        SELECT host,
               window_start_ns // 3600000000000                                 AS hour,
               sum(instance_cost_usd)                                           AS instance_cost_usd,
               sum(unallocated_cost_usd)                                        AS unallocated_cost_usd,
               sum(window_end_ns - window_start_ns) FILTER (WHERE instance_cost_usd IS NOT NULL) AS priced_ns,
               count(*) FILTER (WHERE instance_cost_usd IS NULL)                AS unpriced_windows,
               sum(idle_energy_mj)                                              AS idle_energy_mj,
               sum(co2e_g)                                                      AS co2e_g,
               list(DISTINCT method)                                            AS methods
        FROM cost_windows
        WHERE window_start_ns >= $since_ns AND window_start_ns < $until_ns
        GROUP BY ALL
        ORDER BY hour, host
    """,
    "exports.focus_allocated": """
        SELECT host,
               window_start_ns // 3600000000000      AS hour,
               model, tenant, method,
               sum(allocation_cost_usd)              AS cost_usd,
               sum(overlap_s)                        AS overlap_s,
               count(DISTINCT request_id)            AS requests,
               sum(energy_mj)                        AS energy_mj,
               sum(co2e_g)                           AS co2e_g
        FROM request_costs
        WHERE window_start_ns >= $since_ns AND window_start_ns < $until_ns AND allocation_cost_usd IS NOT NULL
        GROUP BY ALL
        ORDER BY hour, host, model NULLS LAST, tenant NULLS LAST, method
    """,
    "exports.instance_info": """
        SELECT host, hourly_usd, cloud, instance_type, pricing, gpu_type, gpu_count, region, source
        FROM instance_prices
        QUALIFY row_number() OVER (PARTITION BY host ORDER BY effective_from_ns DESC) = 1
    """,
    # Hosted-API calls priced at ingest (catalog / provider), per hour, provider, model and tenant.
    "exports.focus_hosted": """
        SELECT start_time_ns // 3600000000000                     AS hour,
               provider,
               coalesce(request_model, response_model)            AS model,
               tenant, cost_source,
               sum(cost_usd)                                      AS cost_usd,
               count(*)                                           AS requests,
               sum(input_tokens)::BIGINT                          AS input_tokens,
               sum(output_tokens)::BIGINT                         AS output_tokens
        FROM requests
        WHERE start_time_ns >= $since_ns AND start_time_ns < $until_ns
          AND cost_source IN ('catalog', 'provider') AND cost_usd IS NOT NULL
        GROUP BY ALL
        ORDER BY hour, provider NULLS LAST, model NULLS LAST, tenant NULLS LAST, cost_source
    """,
    "exports.unpriced_requests": """
        SELECT count(*) AS n
        FROM requests
        WHERE start_time_ns >= $since_ns AND start_time_ns < $until_ns AND cost_usd IS NULL AND coalesce(cost_source, '') <> 'gpu_time'
    """,
}


# -- fleet Parquet: per-table rows of one hour, the hours that have rows, and loading files back.
FLEET_TABLES: dict[str, str] = {
    # table: its time column (rows belong to the hour their time falls in)
    "requests": "start_time_ns",
    "gpu_samples": "ts_ns",
    "gpu_process_samples": "ts_ns",
    "host_samples": "ts_ns",
    "server_samples": "ts_ns",
    "cost_windows": "window_start_ns",
    "request_costs": "window_start_ns",
    "instance_prices": "effective_from_ns",
}
"""Tables the fleet export writes, and loads back for ``infermeter report --from``."""

for _table, _ts in FLEET_TABLES.items():
    QUERIES[f"exports.fleet_hours.{_table}"] = f"""
        SELECT DISTINCT {_ts} // 3600000000000 AS hour FROM {_table}
        WHERE {_ts} >= $since_ns AND {_ts} < $until_ns ORDER BY hour
    """
    # requests carry no host column: the exporting agent's host is added (and is the hive partition)
    QUERIES[f"exports.fleet_rows.{_table}"] = (
        f"SELECT *, $host AS host FROM {_table} WHERE {_ts} >= $since_ns AND {_ts} < $until_ns ORDER BY {_ts}"
        if _table == "requests" else
        f"SELECT * FROM {_table} WHERE {_ts} >= $since_ns AND {_ts} < $until_ns ORDER BY {_ts}"
    )
    QUERIES[f"exports.fleet_load.{_table}"] = (
        f"INSERT INTO {_table} BY NAME SELECT * EXCLUDE (date, host) "
        f"FROM read_parquet($files, hive_partitioning = true, union_by_name = true)"
        if _table == "requests" else
        f"INSERT INTO {_table} BY NAME SELECT * EXCLUDE (date) "
        f"FROM read_parquet($files, hive_partitioning = true, union_by_name = true)"
    )
