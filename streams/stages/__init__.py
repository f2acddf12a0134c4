"""Plain functions a lead passes through; none of them knows about Kafka."""
