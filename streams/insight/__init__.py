"""What happened to the leads: their history, read back from the topics the workers write."""
