#!/bin/sh
echo "hello @VERSION@ $*"
