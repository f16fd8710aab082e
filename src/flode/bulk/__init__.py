"""Patient data out: `Patient/{id}/$everything` and FHIR Bulk Data `$export`
(https://hl7.org/fhir/uv/bulkdata/export.html), served by the API and by `flode export`."""
