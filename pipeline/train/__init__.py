"""Training loop, checkpoint/resume and split evaluation."""
