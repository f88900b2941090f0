"""`gigafactory chaos`: sim jobs on a dev stack of processes while faults are done to it,
then every invariant checked against the evidence (decision 0019, docs/reliability.md).

`plan` is the seeded schedule of jobs and faults (pure), `faults` does them to the stack's
processes, `evidence` gathers what the store, Temporal, the factories' logs and the sim
agents' trace say, `invariants` checks it (pure), `runner` puts it together.
"""
