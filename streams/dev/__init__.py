"""Tools for development: the local Kafka broker (`local_broker`), the demo scenario (`demo`) and traffic for the tests (`traffic`)."""
