#!/bin/sh
echo "app @VERSION@ $*"
