"""requests.parent_span_id: the span a request was made under (the caller's current span, or the
client's W3C traceparent at the proxy), so exported spans and traces join the caller's trace."""

VERSION = 7
DESCRIPTION = "requests.parent_span_id"

STATEMENTS = [
    "ALTER TABLE requests ADD COLUMN parent_span_id UBIGINT",
]
