"""streambank: an event-sourced, CQRS banking pipeline on Kafka."""
