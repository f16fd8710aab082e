"""The FHIR interactions (https://hl7.org/fhir/R4/http.html), framework-free.

Each takes the `Services`, the `RequestContext` and plain request values, and returns an
`Outcome` or raises a `FhirError`. The HTTP adapter in `flode.api` is a thin shell around them.
"""
