# The template's Architecture=x86_64 builds the layers here (layers/Makefile): x86_64 wheels.
WHEEL_ARCH := x86_64
