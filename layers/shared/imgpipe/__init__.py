"""imgpipe's own code, shared by the Lambda functions through the shared layer."""
