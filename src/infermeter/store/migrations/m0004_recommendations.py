"""Recommendations with history: one run per evaluation, its recommendations beneath it.

A run records the window it looked at and what it concluded (``status``: ``ok``, or
``insufficient_data`` with the reason in ``message``). Money is exact, DECIMAL(18, 9) dollars.
``evidence`` is the JSON of the numbers, the named queries and the assumptions behind a
recommendation.
"""

VERSION = 4
DESCRIPTION = "recommendations"

STATEMENTS = [
    """
    CREATE TABLE recommendation_runs (
        run_id                     UBIGINT NOT NULL PRIMARY KEY,
        evaluated_ns               BIGINT NOT NULL,
        since_ns                   BIGINT NOT NULL,
        until_ns                   BIGINT NOT NULL,
        status                     VARCHAR NOT NULL,   -- ok | insufficient_data
        message                    VARCHAR,
        current_monthly_usd        DECIMAL(18, 9),
        combined_savings_usd_month DECIMAL(18, 9),
        recommendations            INTEGER NOT NULL
    )
    """,
    """
    CREATE TABLE recommendations (
        run_id                     UBIGINT NOT NULL,
        rank                       INTEGER NOT NULL,
        action                     VARCHAR NOT NULL,
        title                      VARCHAR NOT NULL,
        status                     VARCHAR NOT NULL,   -- recommended | superseded
        savings_usd_month          DECIMAL(18, 9) NOT NULL,
        combined_savings_usd_month DECIMAL(18, 9),
        confidence                 DOUBLE NOT NULL,
        how_to                     VARCHAR NOT NULL,
        note                       VARCHAR,
        evidence                   JSON NOT NULL
    )
    """,
    "CREATE INDEX recommendations_run ON recommendations (run_id)",
]
