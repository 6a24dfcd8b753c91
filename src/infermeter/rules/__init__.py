"""Recommendations: one module per rule, and the engine that runs them."""
