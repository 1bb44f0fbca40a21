"""Pure data model: imagelists, policy, versions, strict JSON, canonical form."""
