#!/bin/sh
# Prints a greeting with the build host name and the kernel version.
echo "$1 (built in a container on $(uname -r))"
