"""Rollups (migration m0006): building 10-minute blocks, and reading blocks + raw rows alike.

The ``*_raw`` queries aggregate the base tables over ``[$lo_ns, $hi_ns)`` into exactly the
columns of the matching ``*_rolled`` query, so a reader can add the two.
"""

from .costs import AWAITING_COST

_BLOCK = "600000000000"  # 10 minutes in ns; cost.rollups.BLOCK_NS
_MODEL = "coalesce(request_model, response_model)"
_BUCKET = "CASE WHEN {x} <= 0 THEN -32768 ELSE floor(ln({x}) / ln(1.05))::SMALLINT END"

_REQUEST_AGG_T = f"""
        {_MODEL} AS model, tenant, endpoint, operation, cost_source,
        count(*)                                                   AS requests,
        count(*) FILTER (WHERE status = 'error')                   AS errors,
        count(*) FILTER (WHERE status = 'cancelled')               AS cancelled,
        count(*) FILTER (WHERE tokens_estimated)                   AS estimated_token_requests,
        count(*) FILTER (WHERE cost_usd IS NULL{{not_pending}})    AS unpriced_requests,
        sum(input_tokens)::BIGINT                                  AS input_tokens,
        sum(output_tokens)::BIGINT                                 AS output_tokens,
        sum(coalesce(input_tokens, 0) + coalesce(output_tokens, 0))
            FILTER (WHERE cost_usd IS NOT NULL)::BIGINT            AS priced_tokens,
        sum(cost_usd)::DECIMAL(38, 9)                              AS cost_usd{{pending}}
"""
# Rolled blocks (past the attribution delay) and old stores (no cost windows) have nothing pending;
# the raw rows of the last minutes count self-hosted requests whose cost windows are not final yet
# as pending_requests, not unpriced (as the live views do).
_REQUEST_AGG = _REQUEST_AGG_T.format(not_pending="", pending="")
_REQUEST_AGG_PENDING = _REQUEST_AGG_T.format(
    not_pending=" AND NOT awaiting_cost", pending=",\n        count(*) FILTER (WHERE awaiting_cost)                      AS pending_requests")
_SHARE_AGG = """
        model, tenant, endpoint, operation,
        sum(usage_cost_usd)::DECIMAL(38, 9)      AS usage_cost_usd,
        sum(allocation_cost_usd)::DECIMAL(38, 9) AS allocation_cost_usd,
        sum(energy_mj)::BIGINT                   AS energy_mj,
        sum(gpu_s)                               AS gpu_s,
        sum(co2e_g)                              AS co2e_g
"""
_LATENCY = f"""
        SELECT {_MODEL} AS model, 'duration' AS metric, {_BUCKET.format(x="duration_s")} AS bucket
        FROM requests WHERE start_time_ns >= $lo_ns AND start_time_ns < $hi_ns
        UNION ALL
        SELECT {_MODEL}, 'ttft', {_BUCKET.format(x="ttft_s")}
        FROM requests WHERE start_time_ns >= $lo_ns AND start_time_ns < $hi_ns AND ttft_s IS NOT NULL
"""

QUERIES = {
    # -- building ------------------------------------------------------------------------------------
    "rollups.watermark": "SELECT max(block_ns) AS block_ns FROM rollup_blocks",
    # A store opened read-only is not migrated: readers check what it has.
    "rollups.schema_version": "SELECT coalesce(max(version), 0) AS v FROM schema_version",
    "rollups.first_data": """
        SELECT least((SELECT min(start_time_ns) FROM requests), (SELECT min(window_start_ns) FROM request_costs)) AS ts_ns
    """,
    "rollups.delete_blocks_requests": "DELETE FROM request_rollups WHERE block_ns >= $lo_ns AND block_ns < $hi_ns",
    "rollups.delete_blocks_latency": "DELETE FROM latency_rollups WHERE block_ns >= $lo_ns AND block_ns < $hi_ns",
    "rollups.delete_blocks_shares": "DELETE FROM share_rollups WHERE block_ns >= $lo_ns AND block_ns < $hi_ns",
    "rollups.delete_blocks": "DELETE FROM rollup_blocks WHERE block_ns >= $lo_ns AND block_ns < $hi_ns",
    "rollups.build_requests": f"""
        INSERT INTO request_rollups
        SELECT start_time_ns - start_time_ns % {_BLOCK} AS block_ns, {_REQUEST_AGG}
        FROM requests WHERE start_time_ns >= $lo_ns AND start_time_ns < $hi_ns
        GROUP BY ALL
    """,
    "rollups.build_latency": f"""
        INSERT INTO latency_rollups
        SELECT block_ns, model, metric, bucket, count(*) FROM (
            SELECT start_time_ns - start_time_ns % {_BLOCK} AS block_ns, {_MODEL} AS model, 'duration' AS metric,
                   {_BUCKET.format(x="duration_s")} AS bucket
            FROM requests WHERE start_time_ns >= $lo_ns AND start_time_ns < $hi_ns
            UNION ALL
            SELECT start_time_ns - start_time_ns % {_BLOCK}, {_MODEL}, 'ttft', {_BUCKET.format(x="ttft_s")}
            FROM requests WHERE start_time_ns >= $lo_ns AND start_time_ns < $hi_ns AND ttft_s IS NOT NULL
        ) GROUP BY ALL
    """,
    "rollups.build_shares": f"""
        INSERT INTO share_rollups
        SELECT window_start_ns - window_start_ns % {_BLOCK} AS block_ns, {_SHARE_AGG}
        FROM request_costs WHERE window_start_ns >= $lo_ns AND window_start_ns < $hi_ns
        GROUP BY ALL
    """,
    "rollups.mark_blocks": f"""
        INSERT OR REPLACE INTO rollup_blocks SELECT b, $now_ns FROM range($lo_ns, $hi_ns, {_BLOCK}) t(b)
    """,
    # -- reading: rolled blocks ---------------------------------------------------------------------------
    "rollups.blocks": """
        SELECT block_ns FROM rollup_blocks WHERE block_ns >= $lo_ns AND block_ns < $hi_ns ORDER BY block_ns
    """,
    "rollups.requests_rolled": """
        SELECT model, tenant, endpoint, operation, cost_source,
               sum(requests)::BIGINT AS requests, sum(errors)::BIGINT AS errors, sum(cancelled)::BIGINT AS cancelled,
               sum(estimated_token_requests)::BIGINT AS estimated_token_requests,
               sum(unpriced_requests)::BIGINT AS unpriced_requests, sum(input_tokens)::BIGINT AS input_tokens,
               sum(output_tokens)::BIGINT AS output_tokens, sum(priced_tokens)::BIGINT AS priced_tokens,
               sum(cost_usd)::DECIMAL(38, 9) AS cost_usd, 0::BIGINT AS pending_requests
        FROM request_rollups WHERE block_ns >= $lo_ns AND block_ns < $hi_ns
        GROUP BY ALL
    """,
    "rollups.latency_rolled": """
        SELECT model, metric, bucket, sum(n)::BIGINT AS n
        FROM latency_rollups WHERE block_ns >= $lo_ns AND block_ns < $hi_ns
        GROUP BY ALL
    """,
    "rollups.shares_rolled": """
        SELECT model, tenant, endpoint, operation,
               sum(usage_cost_usd)::DECIMAL(38, 9) AS usage_cost_usd,
               sum(allocation_cost_usd)::DECIMAL(38, 9) AS allocation_cost_usd,
               sum(energy_mj)::BIGINT AS energy_mj, sum(gpu_s) AS gpu_s, sum(co2e_g) AS co2e_g
        FROM share_rollups WHERE block_ns >= $lo_ns AND block_ns < $hi_ns
        GROUP BY ALL
    """,
    "rollups.hosted_spend_rolled": """
        SELECT sum(cost_usd)::DECIMAL(38, 9) AS cost_usd FROM request_rollups
        WHERE block_ns >= $lo_ns AND block_ns < $hi_ns AND cost_source IN ('provider', 'catalog')
    """,
    "rollups.hosted_spend_raw": """
        SELECT sum(cost_usd)::DECIMAL(38, 9) AS cost_usd FROM requests
        WHERE start_time_ns >= $lo_ns AND start_time_ns < $hi_ns AND cost_source IN ('provider', 'catalog')
    """,
    "rollups.first_rolled": """
        SELECT least((SELECT min(block_ns) FROM request_rollups WHERE block_ns >= $lo_ns AND block_ns < $hi_ns),
                     (SELECT min(window_start_ns) FROM cost_windows WHERE window_start_ns >= $lo_ns AND window_start_ns < $hi_ns)) AS ts_ns
    """,
    # -- reading: the same from the base tables -------------------------------------------------------------
    "rollups.requests_raw": f"""
        SELECT {_REQUEST_AGG_PENDING}
        FROM (SELECT *, {AWAITING_COST} AS awaiting_cost FROM requests WHERE start_time_ns >= $lo_ns AND start_time_ns < $hi_ns)
        GROUP BY ALL
    """,
    "rollups.requests_precost_raw": f"""
        SELECT {_REQUEST_AGG}, 0::BIGINT AS pending_requests
        FROM requests WHERE start_time_ns >= $lo_ns AND start_time_ns < $hi_ns
        GROUP BY ALL
    """,
    "rollups.first_raw": """
        SELECT least((SELECT min(start_time_ns) FROM requests WHERE start_time_ns >= $lo_ns AND start_time_ns < $hi_ns),
                     (SELECT min(window_start_ns) FROM cost_windows WHERE window_start_ns >= $lo_ns AND window_start_ns < $hi_ns)) AS ts_ns
    """,
    "rollups.latency_raw": f"""
        SELECT model, metric, bucket, count(*)::BIGINT AS n FROM ({_LATENCY}) GROUP BY ALL
    """,
    "rollups.shares_raw": f"""
        SELECT {_SHARE_AGG}
        FROM request_costs WHERE window_start_ns >= $lo_ns AND window_start_ns < $hi_ns
        GROUP BY ALL
    """,
}
