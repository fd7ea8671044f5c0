"""The uplink plane.

Pure: the client and gateway controllers, the gateway policy, the control
codec.  I/O: their asyncio runners and the gateway's kernel routes.
"""
