"""The quality watch: per-version monitoring, drift against the training data, and suspected
label errors. Imports the store."""
