"""SMART on FHIR authorization: signing keys, access tokens, the authorization server."""
