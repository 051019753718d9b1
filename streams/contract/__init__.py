"""The contract with everything outside the workers: the topics, the record types and their Avro and JSON forms, and the upcasters that read old records as current ones."""
