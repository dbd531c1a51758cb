"""TorchServe's life cycle (start, supervise, restart), its client, and the classify path:
model versions, their gates, and the answers. Imports the store."""
