"""Flöde: a FHIR R4 clinical data platform for a modular health information environment."""

__version__ = "0.1.0"
