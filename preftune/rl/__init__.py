"""Online RL: rewards, dataset environments, a trajectory API, a GRPO trainer, a launcher."""
