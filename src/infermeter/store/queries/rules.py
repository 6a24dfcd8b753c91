"""Queries behind the recommendation rules: measured facts over a window, and recommendation history.

Every window query takes ``$since_ns`` and ``$until_ns`` (wall-clock ns, half-open). A rule's
evidence names the query its numbers came from, so a reader can rerun it.
"""

# Activity islands: requests whose start falls within ``$gap_ns`` of the running end of the
# requests before them belong to one island. With gap 0 the islands' union is the time at least
# one request was in flight; with gap = a serverless keep-warm window, each island is one warm
# container period (and one cold start).
_ISLANDS = """
    WITH r AS (
        SELECT start_time_ns AS s,
               start_time_ns + CAST(duration_s * 1e9 AS BIGINT) AS e
        FROM requests
        WHERE start_time_ns >= $since_ns AND start_time_ns < $until_ns
    ),
    o AS (
        SELECT s, e, max(e) OVER (ORDER BY s, e ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_end
        FROM r
    ),
    g AS (
        SELECT s, e,
               sum(CASE WHEN prev_end IS NULL OR s > prev_end + $gap_ns THEN 1 ELSE 0 END)
                   OVER (ORDER BY s, e ROWS UNBOUNDED PRECEDING) AS island
        FROM o
    ),
    i AS (
        SELECT island, min(s) AS s, least(max(e), $until_ns) AS e FROM g GROUP BY island
    ),
    gaps AS (
        SELECT s - lag(e) OVER (ORDER BY s) AS gap_ns FROM i
    )
    SELECT (SELECT count(*) FROM i)                                   AS islands,
           (SELECT coalesce(sum(e - s), 0) FROM i)::DOUBLE / 1e9      AS active_s,
           (SELECT min(s) FROM i)                                     AS first_ns,
           (SELECT max(e) FROM i)                                     AS last_ns,
           (SELECT coalesce(max(gap_ns), 0) FROM gaps)::DOUBLE / 1e9  AS longest_inner_gap_s
"""

# Load per active minute: request-seconds started in the minute / 60 = mean concurrency in it.
_MINUTE_LOAD = """
    WITH m AS (
        SELECT start_time_ns // 60000000000 AS minute, sum(duration_s) / 60.0 AS load
        FROM requests
        WHERE start_time_ns >= $since_ns AND start_time_ns < $until_ns
        GROUP BY 1
    )
"""

QUERIES = {
    "rules.latest_ns": """
        SELECT greatest(
            (SELECT max(start_time_ns + CAST(duration_s * 1e9 AS BIGINT)) FROM requests),
            (SELECT max(ts_ns) FROM gpu_samples),
            (SELECT max(ts_ns) FROM server_samples)
        ) AS latest_ns,
        least(
            (SELECT min(start_time_ns) FROM requests),
            (SELECT min(ts_ns) FROM gpu_samples),
            (SELECT min(ts_ns) FROM server_samples)
        ) AS earliest_ns
    """,
    "rules.requests": """
        SELECT count(*)                                                  AS requests,
               count(*) FILTER (WHERE status = 'ok')                     AS ok,
               coalesce(sum(input_tokens), 0)::BIGINT                    AS input_tokens,
               coalesce(sum(output_tokens), 0)::BIGINT                   AS output_tokens,
               avg(input_tokens)                                         AS mean_input_tokens,
               avg(output_tokens)                                        AS mean_output_tokens,
               coalesce(sum(duration_s), 0)                              AS request_s,
               quantile_cont(duration_s, 0.5)                            AS latency_p50_s,
               quantile_cont(duration_s, 0.95)                           AS latency_p95_s,
               quantile_cont(ttft_s, 0.5)                                AS ttft_p50_s,
               count(*) FILTER (WHERE streaming)                         AS streaming,
               min(start_time_ns)                                        AS first_ns,
               max(start_time_ns)                                        AS last_ns
        FROM requests
        WHERE start_time_ns >= $since_ns AND start_time_ns < $until_ns
    """,
    "rules.models": """
        SELECT coalesce(request_model, response_model, '(unknown)') AS model,
               any_value(provider)                                  AS provider,
               count(*)                                             AS requests,
               coalesce(sum(input_tokens), 0)::BIGINT               AS input_tokens,
               coalesce(sum(output_tokens), 0)::BIGINT              AS output_tokens
        FROM requests
        WHERE start_time_ns >= $since_ns AND start_time_ns < $until_ns
        GROUP BY 1
        ORDER BY requests DESC, model
    """,
    "rules.endpoints": """
        SELECT coalesce(endpoint, '')                 AS endpoint,
               coalesce(tenant, '')                   AS tenant,
               count(*)                               AS requests,
               coalesce(sum(duration_s), 0)           AS request_s,
               count(*) FILTER (WHERE streaming)      AS streaming
        FROM requests
        WHERE start_time_ns >= $since_ns AND start_time_ns < $until_ns
        GROUP BY 1, 2
        ORDER BY requests DESC
    """,
    "rules.islands": _ISLANDS,
    "rules.concurrency": _MINUTE_LOAD + """
        SELECT count(*)                     AS active_minutes,
               avg(load)                    AS load_mean,
               quantile_cont(load, 0.5)     AS load_p50,
               quantile_cont(load, 0.95)    AS load_p95,
               max(load)                    AS load_max
        FROM m
    """,
    # The same per-minute load as a histogram (load rounded up to a quarter), for replica counts.
    "rules.load_histogram": _MINUTE_LOAD + """
        SELECT ceil(load * 4) / 4 AS load, count(*) AS minutes FROM m GROUP BY 1 ORDER BY 1
    """,
    "rules.replicas": """
        SELECT (SELECT count(DISTINCT host) FROM gpu_samples
                WHERE ts_ns >= $since_ns AND ts_ns < $until_ns)                    AS gpu_hosts,
               (SELECT count(DISTINCT server_address) FROM requests
                WHERE start_time_ns >= $since_ns AND start_time_ns < $until_ns)    AS servers
    """,
    "rules.gpus": """
        SELECT gpu_uuid,
               any_value(gpu_name)                                   AS gpu_name,
               count(*)                                              AS samples,
               max(mem_total_bytes)                                  AS mem_total_bytes,
               max(mem_used_bytes)                                   AS mem_used_max_bytes,
               avg(utilization_pct)                                  AS util_mean_pct,
               quantile_cont(utilization_pct, 0.95)                  AS util_p95_pct,
               avg(utilization_pct) FILTER (WHERE utilization_pct >= $busy_pct) AS util_busy_mean_pct,
               count(*) FILTER (WHERE utilization_pct >= $busy_pct)  AS busy_samples,
               avg(power_w)                                          AS power_mean_w,
               min(ts_ns)                                            AS first_ns,
               max(ts_ns)                                            AS last_ns
        FROM gpu_samples
        WHERE ts_ns >= $since_ns AND ts_ns < $until_ns AND parent_uuid IS NULL
        GROUP BY gpu_uuid
        ORDER BY gpu_uuid
    """,
    "rules.server_metrics": """
        SELECT metric,
               any_value(kind)                 AS kind,
               count(value)                    AS samples,
               avg(value)                      AS mean,
               quantile_cont(value, 0.95)      AS p95,
               max(value)                      AS max
        FROM server_samples
        WHERE ts_ns >= $since_ns AND ts_ns < $until_ns
        GROUP BY metric
        ORDER BY metric
    """,
    # Mean of a server metric over the ticks at which requests were running.
    "rules.server_metric_busy": """
        WITH busy AS (
            SELECT ts_ns, url FROM server_samples
            WHERE ts_ns >= $since_ns AND ts_ns < $until_ns AND metric = 'requests_running' AND value > 0
        )
        SELECT avg(s.value) AS mean, quantile_cont(s.value, 0.95) AS p95, count(s.value) AS samples
        FROM server_samples s JOIN busy USING (ts_ns, url)
        WHERE s.metric = $metric
    """,
    # Requests whose prompt hash was already seen earlier in the window.
    "rules.prompt_repeats": """
        WITH h AS (
            SELECT prompt_hash, input_tokens, output_tokens, duration_s,
                   row_number() OVER (PARTITION BY prompt_hash ORDER BY start_time_ns) AS nth
            FROM requests
            WHERE start_time_ns >= $since_ns AND start_time_ns < $until_ns AND prompt_hash IS NOT NULL
        )
        SELECT count(*)                                               AS hashed,
               count(DISTINCT prompt_hash)                            AS distinct_prompts,
               count(*) FILTER (WHERE nth > 1)                        AS repeats,
               coalesce(sum(duration_s) FILTER (WHERE nth > 1), 0)    AS repeat_request_s,
               coalesce(sum(duration_s), 0)                           AS hashed_request_s
        FROM h
    """,
    # The box's price in force at the end of the window (the latest row effective before it).
    "rules.instance": """
        SELECT host, effective_from_ns, hourly_usd, cloud, instance_type, pricing, gpu_type, gpu_count, region
        FROM instance_prices
        WHERE effective_from_ns < $until_ns
        ORDER BY effective_from_ns DESC, host
        LIMIT 1
    """,
    "rules.cost_windows": """
        SELECT sum(instance_cost_usd)                              AS instance_cost_usd,
               sum(idle_cost_usd)                                  AS idle_cost_usd,
               sum(usage_cost_usd)                                 AS usage_cost_usd,
               coalesce(sum(window_end_ns - window_start_ns), 0)::DOUBLE / 1e9 AS covered_s
        FROM cost_windows
        WHERE window_start_ns >= $since_ns AND window_end_ns <= $until_ns
    """,
    # -- recommendation history ----------------------------------------------------------------
    "rules.runs": """
        SELECT run_id, evaluated_ns, since_ns, until_ns, status, message,
               current_monthly_usd, combined_savings_usd_month, recommendations
        FROM recommendation_runs
        ORDER BY evaluated_ns DESC, run_id DESC
        LIMIT $limit
    """,
    "rules.run_recommendations": """
        SELECT run_id, rank, action, title, status, savings_usd_month, combined_savings_usd_month,
               confidence, how_to, note, evidence
        FROM recommendations
        WHERE run_id = $run_id
        ORDER BY rank
    """,
    "rules.action_history": """
        SELECT r.run_id, r.evaluated_ns, x.action, x.status, x.savings_usd_month, x.confidence
        FROM recommendations x JOIN recommendation_runs r USING (run_id)
        WHERE r.evaluated_ns >= $since_ns
        ORDER BY r.evaluated_ns, x.rank
    """,
}
