"""Training a compiled program: data, the step, optimizers, the loop, checkpoints."""
