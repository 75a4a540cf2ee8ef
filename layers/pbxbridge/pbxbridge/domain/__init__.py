"""What a push means: domain logic, free of boto3 and HTTP (the stores are passed in)."""
