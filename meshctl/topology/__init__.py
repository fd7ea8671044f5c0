"""Views of the mesh.

The networkx model fed by babeld, its exports (JSON, NetJSON, DOT, GraphML),
rendering, and one-shot snapshots.
"""
