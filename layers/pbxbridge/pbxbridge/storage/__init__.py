"""Data access: DynamoDB, behind the stores the domain defines."""
