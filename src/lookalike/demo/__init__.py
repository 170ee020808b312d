"""The demo: a product catalog built from Fashion-MNIST, and the end-to-end `lookalike demo`."""
