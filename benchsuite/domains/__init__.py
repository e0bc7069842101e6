"""Problem definitions shared by backbones and rewards (neither imports the other): the Ehrlich holo instance,
the SELFIES alphabet and molecule pretraining process."""
