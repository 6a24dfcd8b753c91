"""Queries behind the live views (``infermeter top``): per-model and per-tenant rates, the tail.

``$model`` / ``$tenant`` are optional case-insensitive substring filters (NULL: no filter).

A self-hosted request has no cost until attribution finalises the windows it ran in
(``attribution_delay_s`` after they close): until then it is *pending*, not unpriced. It is
unpriced once its windows are final and still gave it no cost (the box has no price).
"""

from .costs import AWAITING_COST as _AWAITING

_FILTERED = f"""
    SELECT *, coalesce(request_model, response_model, '(unknown)') AS model, {_AWAITING} AS awaiting_cost
    FROM requests
    WHERE start_time_ns >= $since_ns AND start_time_ns < $until_ns
      AND ($model::VARCHAR IS NULL
           OR contains(lower(coalesce(request_model, response_model, '(unknown)')), lower($model::VARCHAR)))
      AND ($tenant::VARCHAR IS NULL OR contains(lower(coalesce(tenant, '')), lower($tenant::VARCHAR)))
"""

_AGGREGATES = """
           count(*)                                                            AS requests,
           count(*) FILTER (WHERE status = 'error')                            AS errors,
           sum(input_tokens)::BIGINT                                           AS input_tokens,
           sum(output_tokens)::BIGINT                                          AS output_tokens,
           quantile_cont(duration_s, [0.5, 0.95])                              AS latency_q,  -- one sort for both
           quantile_cont(ttft_s, [0.5, 0.95])                                  AS ttft_q,
           sum(cost_usd)                                                       AS cost_usd,
           count(*) FILTER (WHERE cost_usd IS NULL AND NOT awaiting_cost)      AS unpriced_requests,
           count(*) FILTER (WHERE awaiting_cost)                               AS pending_requests,
           (sum(coalesce(input_tokens, 0) + coalesce(output_tokens, 0))
                FILTER (WHERE cost_usd IS NOT NULL))::BIGINT                   AS priced_tokens,
           min(start_time_ns)                                                  AS first_ns,
           max(start_time_ns)                                                  AS last_ns
"""

QUERIES = {
    "live.first_ns": "SELECT min(start_time_ns) AS first_ns FROM requests WHERE start_time_ns < $until_ns",
    "live.by_model": f"""
        WITH w AS ({_FILTERED})
        SELECT model, {_AGGREGATES}
        FROM w GROUP BY model
        ORDER BY cost_usd DESC NULLS LAST, requests DESC, model
    """,
    "live.by_tenant": f"""
        WITH w AS ({_FILTERED})
        SELECT coalesce(tenant, '(none)') AS tenant,
               count(DISTINCT model)                                           AS models, {_AGGREGATES}
        FROM w GROUP BY 1
        ORDER BY cost_usd DESC NULLS LAST, requests DESC, tenant
    """,
    "live.tail": f"""
        SELECT start_time_ns, duration_s, ttft_s,
               coalesce(request_model, response_model, '(unknown)') AS model,
               tenant, endpoint, operation, source, status, error_type, streaming,
               input_tokens, output_tokens, tokens_estimated, cost_usd, cost_source, http_status,
               request_id, {_AWAITING} AS awaiting_cost
        FROM requests
        WHERE start_time_ns < $until_ns
          AND ($model::VARCHAR IS NULL
               OR contains(lower(coalesce(request_model, response_model, '(unknown)')), lower($model::VARCHAR)))
          AND ($tenant::VARCHAR IS NULL OR contains(lower(coalesce(tenant, '')), lower($tenant::VARCHAR)))
        ORDER BY start_time_ns DESC
        LIMIT $limit
    """,
}
