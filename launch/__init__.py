"""Entry points and process wiring: the CLI, the `serve` commands, the dev stack, the
demo, workers and the factory runtime. The top layer: it imports every layer below it, and
nothing imports it."""
