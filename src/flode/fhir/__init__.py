"""Pure FHIR R4 knowledge: definitions, validation, JSON handling, OperationOutcome. No I/O."""
