"""Sample-quality and training-progress measures."""
