"""The JobWorkflow, in parts: handlers (`workflow`), DAG parent (`parent`), the job's own
step (`leaf`), state and bookkeeping (`record`)."""

from workflows.job.workflow import JobWorkflow

__all__ = ["JobWorkflow"]
