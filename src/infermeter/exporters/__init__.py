"""Exporters: OTLP traces and metrics, Prometheus /metrics, FOCUS cost files, fleet Parquet."""
