"""`python -m mnist_lab.serve`: the drawing page and a JSON API over one checkpoint."""
