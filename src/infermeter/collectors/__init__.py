"""Collectors: GPU (NVML), host and process (psutil), model-server /metrics, and the sampler loop."""
