"""Report model and renderers: one module per output format."""
