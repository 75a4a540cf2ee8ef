"""pbxbridge: the CRM side of the cloud PBX REST API, on AWS Lambda and DynamoDB."""

__version__ = "0.1.0"
