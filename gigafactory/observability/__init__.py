"""Metrics and traces: what each process measures and how it is exported.

- `metrics`: this process's own Prometheus metrics (routing decisions, slot hand-offs,
  preemptions, fenced reports) and the endpoint that serves them;
- `runtime`: the Temporal SDK's runtime metrics (Prometheus), per process;
- `tracing`: OpenTelemetry traces, carried through Temporal by its tracing interceptor;
- `span_file`: the JSON-lines span exporter of `FLEET_TRACING=file`;
- `process`: what a long-running process turns on at start.

The fleet's own figures (jobs by stage, slots, spend...) are read from the store by
`gigafactory.services.metrics`, so any API process reports the same.
"""
