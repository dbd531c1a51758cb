"""Training jobs: the runner that starts one training process at a time, and the retraining
policy that decides when. Imports the store and TorchServe's process helpers."""
