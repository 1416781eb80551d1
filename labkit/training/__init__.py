"""Training labkit's MTP head: config, self-distillation data, the objective, the one Trainer, a run in a folder
(distill), seeds, engine evaluation."""
