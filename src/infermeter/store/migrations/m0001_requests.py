"""The requests table: one row per InferenceRecord, columns in RECORD_FIELDS order."""

VERSION = 1
DESCRIPTION = "requests"

STATEMENTS = [
    """
    CREATE TABLE requests (
        start_time_ns    BIGINT NOT NULL,
        duration_s       DOUBLE NOT NULL,
        operation        VARCHAR NOT NULL,
        source           VARCHAR NOT NULL,
        status           VARCHAR NOT NULL,
        trace_id         UHUGEINT,
        span_id          UBIGINT,
        ttft_s           DOUBLE,
        request_model    VARCHAR,
        response_model   VARCHAR,
        provider         VARCHAR,
        endpoint         VARCHAR,
        server_address   VARCHAR,
        tenant           VARCHAR,
        error_type       VARCHAR,
        finish_reason    VARCHAR,
        streaming        BOOLEAN NOT NULL,
        input_tokens     INTEGER,
        output_tokens    INTEGER,
        cached_tokens    INTEGER,
        tokens_estimated BOOLEAN NOT NULL,
        request_bytes    BIGINT,
        response_bytes   BIGINT,
        http_status      SMALLINT,
        cost_usd         DECIMAL(18, 9),
        cost_currency    VARCHAR,
        cost_source      VARCHAR,
        prompt_hash      BIGINT,
        request_id       UBIGINT NOT NULL
    )
    """,
]
