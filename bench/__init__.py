"""`gigafactory bench`: the end-to-end benchmark beside bare Temporal, and the routing
micro-benchmark. Imports the layers below it; nothing imports it."""
