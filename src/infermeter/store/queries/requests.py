"""Queries over the requests table."""

QUERIES = {
    "requests.count": "SELECT count(*) AS n FROM requests",
    "requests.by_model": """
        SELECT coalesce(request_model, response_model, '(unknown)')              AS model,
               count(*)                                                          AS requests,
               count(*) FILTER (WHERE status = 'error')                          AS errors,
               count(*) FILTER (WHERE status = 'cancelled')                      AS cancelled,
               sum(input_tokens)::BIGINT                                         AS input_tokens,
               sum(output_tokens)::BIGINT                                        AS output_tokens,
               count(*) FILTER (WHERE tokens_estimated)                          AS estimated_token_requests,
               quantile_cont(duration_s, 0.5)                                    AS latency_p50_s,
               quantile_cont(duration_s, 0.95)                                   AS latency_p95_s,
               quantile_cont(ttft_s, 0.5)                                        AS ttft_p50_s,
               sum(cost_usd)                                                     AS cost_usd,
               count(*) FILTER (WHERE cost_usd IS NULL)                          AS unpriced_requests,
               min(start_time_ns)                                                AS first_ns,
               max(start_time_ns)                                                AS last_ns
        FROM requests
        WHERE start_time_ns >= $since_ns AND start_time_ns < $until_ns
        GROUP BY 1
        ORDER BY cost_usd DESC NULLS LAST, requests DESC, model
    """,
    "requests.recent": """
        SELECT * FROM requests
        WHERE start_time_ns >= $since_ns
        ORDER BY start_time_ns DESC
        LIMIT $limit
    """,
}
