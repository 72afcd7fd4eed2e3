"""Using a trained encoder: the SimCSE API, indexes, corpus encoding, export."""
