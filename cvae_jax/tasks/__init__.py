"""One small module per example: wires a model, data and the generic trainer."""
