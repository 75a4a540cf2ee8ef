"""The local stack: the template's functions in-process against an embedded DynamoDB (moto's server)."""
