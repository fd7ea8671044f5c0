"""The link plane.

Pure: the plan for per-neighbour tunnels.  I/O: the runner that keeps them,
and the network devices it makes.
"""
