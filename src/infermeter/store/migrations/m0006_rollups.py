"""Rollups: 10-minute aggregates of ``requests`` and ``request_costs`` so day-long summaries stay fast.

A derived cache, never the source of truth: every row can be rebuilt from ``requests`` and
``request_costs``, and the rollup component does rebuild a block when late records or
re-attributed windows change it. Readers combine the blocks fully inside their window (and below
the watermark) with a scan of the raw rows for the rest (the partial block at the start, and the
recent minutes not rolled yet), so answers cover every row.

``rollup_blocks`` -- which 10-minute blocks are rolled (one row per block)
    block_ns        block start, wall-clock ns, a multiple of 600 s
    rolled_at_ns    when it was (last) rolled

``request_rollups`` -- ``requests`` per block (by ``start_time_ns``) and group
    block_ns, model, tenant, endpoint, operation, cost_source   the group (model = request_model,
                                    else response_model; NULLs kept as NULL)
    requests, errors, cancelled, estimated_token_requests, unpriced_requests (cost_usd NULL)
    input_tokens, output_tokens, priced_tokens (tokens of requests with a cost)
    cost_usd        exact sum, DECIMAL(38, 9)

``latency_rollups`` -- histograms of ``duration_s`` and ``ttft_s`` per block and model
    metric          'duration' or 'ttft'
    bucket          floor(ln(seconds) / ln(1.05)): 5 % wide, so a quantile read from the buckets is
                    within 2.5 % of the exact one; -32768 holds zero durations
    n               values in the bucket

``share_rollups`` -- ``request_costs`` per block (by ``window_start_ns``) and group
    usage_cost_usd, allocation_cost_usd (exact sums), energy_mj (exact), gpu_s, co2e_g
"""

VERSION = 6
DESCRIPTION = "rollups"

STATEMENTS = [
    """
    CREATE TABLE rollup_blocks (
        block_ns     BIGINT PRIMARY KEY,
        rolled_at_ns BIGINT NOT NULL
    )
    """,
    """
    CREATE TABLE request_rollups (
        block_ns                 BIGINT NOT NULL,
        model                    VARCHAR,
        tenant                   VARCHAR,
        endpoint                 VARCHAR,
        operation                VARCHAR,
        cost_source              VARCHAR,
        requests                 BIGINT NOT NULL,
        errors                   BIGINT NOT NULL,
        cancelled                BIGINT NOT NULL,
        estimated_token_requests BIGINT NOT NULL,
        unpriced_requests        BIGINT NOT NULL,
        input_tokens             BIGINT,
        output_tokens            BIGINT,
        priced_tokens            BIGINT,
        cost_usd                 DECIMAL(38, 9)
    )
    """,
    """
    CREATE TABLE latency_rollups (
        block_ns BIGINT NOT NULL,
        model    VARCHAR,
        metric   VARCHAR NOT NULL,
        bucket   SMALLINT NOT NULL,
        n        BIGINT NOT NULL
    )
    """,
    """
    CREATE TABLE share_rollups (
        block_ns            BIGINT NOT NULL,
        model               VARCHAR,
        tenant              VARCHAR,
        endpoint            VARCHAR,
        operation           VARCHAR,
        usage_cost_usd      DECIMAL(38, 9),
        allocation_cost_usd DECIMAL(38, 9),
        energy_mj           BIGINT,
        gpu_s               DOUBLE,
        co2e_g              DOUBLE
    )
    """,
]
