"""Sampler output: GPU, GPU processes, host, and model-server metrics, one row per tick and source.

``ts_ns`` is the tick's wall-clock time (aligned to the sample interval); every value that could
not be read is NULL, never 0. ``energy_j`` is NVML's cumulative total-energy counter (J since the
driver loaded), so energy over a window is a difference of two samples.
"""

VERSION = 2
DESCRIPTION = "samples"

STATEMENTS = [
    """
    CREATE TABLE gpu_samples (
        ts_ns               BIGINT NOT NULL,
        host                VARCHAR NOT NULL,
        gpu_uuid            VARCHAR NOT NULL,
        gpu_index           INTEGER,
        gpu_name            VARCHAR,
        parent_uuid         VARCHAR,          -- the physical GPU of a MIG device
        utilization_pct     DOUBLE,
        mem_utilization_pct DOUBLE,
        mem_used_bytes      BIGINT,
        mem_total_bytes     BIGINT,
        power_w             DOUBLE,
        power_limit_w       DOUBLE,
        energy_j            DOUBLE,
        temperature_c       DOUBLE,
        sm_clock_mhz        INTEGER
    )
    """,
    """
    CREATE TABLE gpu_process_samples (
        ts_ns          BIGINT NOT NULL,
        host           VARCHAR NOT NULL,
        gpu_uuid       VARCHAR NOT NULL,
        pid            INTEGER NOT NULL,
        used_mem_bytes BIGINT
    )
    """,
    """
    CREATE TABLE host_samples (
        ts_ns            BIGINT NOT NULL,
        host             VARCHAR NOT NULL,
        cpu_pct          DOUBLE,
        cpu_count        INTEGER,
        mem_used_bytes   BIGINT,
        mem_total_bytes  BIGINT,
        target_pid       INTEGER,
        target_procs     INTEGER,
        target_cpu_pct   DOUBLE,
        target_rss_bytes BIGINT
    )
    """,
    """
    CREATE TABLE server_samples (
        ts_ns  BIGINT NOT NULL,
        host   VARCHAR NOT NULL,
        url    VARCHAR NOT NULL,
        kind   VARCHAR NOT NULL,   -- vllm, tgi, llamacpp
        metric VARCHAR NOT NULL,   -- normalised name, e.g. requests_running, kv_cache_usage
        value  DOUBLE
    )
    """,
]
