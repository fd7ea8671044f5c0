"""The node: the daemon that composes babeld, the planes and gossip; metrics, logs. Nothing below imports it."""
