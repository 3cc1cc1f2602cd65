"""Vision: image networks, image-text scorers, fusion and the relevance gate."""
