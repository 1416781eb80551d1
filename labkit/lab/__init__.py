"""What the notebooks show: widgets, figures, HTML views, and each notebook's experiments."""
