"""The HTTP API of the control plane (FastAPI): thin routes over the store and Temporal."""
