"""Training labkit's MTP head: self-distillation data, the training loop, seeds, evaluation."""
