"""Queries over the sampler's tables (gpu_samples, gpu_process_samples, host_samples, server_samples).

"Latest" means the last tick before ``$until_ns`` that wrote the table; history is averaged into buckets of
``$step_ns`` (bucket_ns is the bucket's start). Column aliases match the field names of
:mod:`infermeter.collectors.readings`, so live and stored readings look the same.
"""

_GPU_COLUMNS = """
    ts_ns, gpu_uuid AS uuid, gpu_index AS "index", gpu_name AS name, parent_uuid, utilization_pct,
    mem_utilization_pct, mem_used_bytes, mem_total_bytes, power_w, power_limit_w, energy_j,
    temperature_c, sm_clock_mhz
"""

QUERIES = {
    "samples.counts": """
        SELECT (SELECT count(*) FROM gpu_samples)         AS gpu_samples,
               (SELECT count(*) FROM gpu_process_samples) AS gpu_process_samples,
               (SELECT count(*) FROM host_samples)        AS host_samples,
               (SELECT count(*) FROM server_samples)      AS server_samples
    """,
    "samples.first_ts": """
        SELECT least((SELECT min(ts_ns) FROM gpu_samples), (SELECT min(ts_ns) FROM host_samples),
                     (SELECT min(ts_ns) FROM server_samples)) AS ts_ns
    """,
    "samples.gpu_latest": f"""
        SELECT {_GPU_COLUMNS} FROM gpu_samples
        WHERE ts_ns = (SELECT max(ts_ns) FROM gpu_samples WHERE ts_ns < $until_ns)
        ORDER BY gpu_index, parent_uuid NULLS FIRST, gpu_uuid
    """,
    "samples.gpu_processes_at": """
        SELECT gpu_uuid AS uuid, pid, used_mem_bytes FROM gpu_process_samples
        WHERE ts_ns = $ts_ns
        ORDER BY gpu_uuid, pid
    """,
    "samples.host_latest": """
        SELECT ts_ns, cpu_pct, cpu_count, mem_used_bytes, mem_total_bytes,
               target_pid, target_procs, target_cpu_pct, target_rss_bytes
        FROM host_samples WHERE ts_ns < $until_ns ORDER BY ts_ns DESC LIMIT 1
    """,
    "samples.server_latest": """
        SELECT ts_ns, url, kind, metric, value FROM server_samples
        WHERE ts_ns < $until_ns
        QUALIFY ts_ns = max(ts_ns) OVER (PARTITION BY url)
        ORDER BY url, metric
    """,
    "samples.gpu_history": """
        SELECT gpu_uuid AS uuid, any_value(gpu_name) AS name,
               (ts_ns // $step_ns) * $step_ns        AS bucket_ns,
               avg(utilization_pct)                  AS utilization_pct,
               avg(mem_used_bytes)::BIGINT           AS mem_used_bytes,
               avg(power_w)                          AS power_w,
               max(temperature_c)                    AS temperature_c,
               count(*)                              AS samples
        FROM gpu_samples
        WHERE ts_ns >= $since_ns AND ts_ns < $until_ns
        GROUP BY gpu_uuid, bucket_ns
        ORDER BY uuid, bucket_ns
    """,
    "samples.host_history": """
        SELECT (ts_ns // $step_ns) * $step_ns AS bucket_ns,
               avg(cpu_pct)                   AS cpu_pct,
               avg(mem_used_bytes)::BIGINT    AS mem_used_bytes,
               avg(target_cpu_pct)            AS target_cpu_pct,
               avg(target_rss_bytes)::BIGINT  AS target_rss_bytes,
               count(*)                       AS samples
        FROM host_samples
        WHERE ts_ns >= $since_ns AND ts_ns < $until_ns
        GROUP BY bucket_ns
        ORDER BY bucket_ns
    """,
    "samples.server_history": """
        SELECT url, metric, (ts_ns // $step_ns) * $step_ns AS bucket_ns, avg(value) AS value
        FROM server_samples
        WHERE ts_ns >= $since_ns AND ts_ns < $until_ns
          AND metric IN ('requests_running', 'requests_waiting', 'kv_cache_usage')
        GROUP BY url, metric, bucket_ns
        ORDER BY url, metric, bucket_ns
    """,
}
