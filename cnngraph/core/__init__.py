"""The floor: errors, the rule registry, the graph schema, plugin loading."""
