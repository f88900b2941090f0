"""Engine adapters: how a factory starts each kind of agent and reads its output.

Import from the modules (`activities.engines.registry`, `.base`): this package stays
import-free so that `python -m activities.engines.sim_agent` starts fast.
"""
