"""Controller gossip: signed node descriptions, the table that merges them (pure), and the runner that floods them."""
