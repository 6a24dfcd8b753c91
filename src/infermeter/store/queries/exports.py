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
}
