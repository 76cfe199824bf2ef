"""The sensors. One module per probe, one `probe(host, config) -> Observation` per module,
listed by hand in `probes.registry`.

The engine owns timeouts, common metrics and log context; a probe returns *why* it failed.
This file imports nothing, so that one sensor module can be used without the others.
"""
