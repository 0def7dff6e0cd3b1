"""Reverse proxies flaskbench can put in front of a target: one module per proxy (like servers/),
each defining `PROXY`; nothing outside a proxy's module names that proxy."""
