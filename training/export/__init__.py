"""The model directory and the .mar: writing them, reading a model back to predict (one text or
a whole file)."""
