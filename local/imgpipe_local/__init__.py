"""imgpipe's Docker-free local stack and command-line tools (not shipped to Lambda)."""
