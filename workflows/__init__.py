"""Temporal workflows of the control plane. Deterministic: they import no I/O code.

The package itself imports nothing, because the workflow sandbox re-imports a workflow's
package for every run; what a worker registers is in `workflows.registry`.
"""
