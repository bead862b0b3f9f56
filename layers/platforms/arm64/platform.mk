# The template's Architecture=arm64 builds the layers here (layers/Makefile): aarch64 wheels.
WHEEL_ARCH := aarch64
