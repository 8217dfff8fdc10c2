"""The networks of each model variant and what they train with, split by role as in NVlabs/SPADE:
normalization (SPADE and the parameter-free norms), blocks (residual blocks), generator,
discriminator, encoder and loss; networks builds a model's networks from its ModelConfig,
objective pairs them with their losses for a training step, and trained writes and reads a
trained model (generator.pt). architecture holds the facts the config is checked against."""
