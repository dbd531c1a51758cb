"""The base encoders: resolving and converting them (e5 from its offline copy), trimming a
vocabulary to the training texts, and the cache of frozen-encoder embeddings."""
