"""Lead Courier: Kafka-native lead delivery."""
