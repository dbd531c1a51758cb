"""What every .mar carries and the TorchServe handler runs: the model (encoder, lexical and field
features, heads, answers), its cleaning, and its similar-ticket index. Imports the text room."""
