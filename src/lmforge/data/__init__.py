"""Read labelled rows from files, split them, and batch them for the model."""
